// COPY/ADD --chown and --chmod values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::solver {

struct Owner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// "user", "user:group", "uid", "uid:gid" (names and numbers mixed as docker allows). Names are
// looked up in ROOT/etc/passwd and ROOT/etc/group (inside the root). A user alone also sets the
// group: the user's primary group, or the same number for a numeric user. Throws kiln::Error
// ("unable to find user app: no matching entries in passwd file") when a name is unknown.
Owner resolve_owner(std::string_view spec, const std::filesystem::path& root);

// The process identity for USER: "user[:group]" with names or numbers. A user without a group
// takes the user's primary group from passwd, or 0 when a numeric user has no passwd entry (as
// docker and runc do); supplementary groups are those of /etc/group that list the user by name.
// An empty spec means root. Throws kiln::Error for an unknown user or group name.
struct ProcessUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
};
ProcessUser resolve_process_user(std::string_view spec, const std::filesystem::path& root);

// A --chmod value: octal ("0755", "644") or symbolic ("u+x,g-w,o=r", "a+X"), as chmod(1) reads
// it. Throws kiln::Error for anything else.
class ChmodSpec {
 public:
  static ChmodSpec parse(std::string_view text);
  // The permission bits (with setuid/setgid/sticky) for an entry whose current mode is `mode`.
  mode_t apply(mode_t mode, bool is_directory) const;

 private:
  struct Clause {
    unsigned who;  // mask of 07777 bits the clause touches
    char op;       // '+', '-', '='
    std::string perms;
  };
  bool octal_ = false;
  mode_t bits_ = 0;
  std::vector<Clause> clauses_;
};

}  // namespace kiln::solver
