// COPY/ADD --chown owners and the identity RUN runs as, looked up in a root filesystem.
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

// "user", "user:group", "uid", "uid:gid", ":group" (names and numbers mixed as docker allows).
// Names are looked up in ROOT/etc/passwd and ROOT/etc/group (inside the root). A user alone also
// sets the group: the user's primary group, or the same number for a numeric user; a group alone
// goes with uid 0 (BuildKit). As in BuildKit, a name that is not there is not an error: an
// unknown user is uid 0 with gid 0, an unknown group leaves the gid as the user made it. Throws
// kiln::Error only for an empty user or group ("--chown=app:").
Owner resolve_owner(std::string_view spec, const std::filesystem::path& root);

// The process identity for USER: "user[:group]" with names or numbers. A user without a group
// takes the user's primary group from passwd, or 0 when a numeric user has no passwd entry (as
// docker and runc do). The supplementary groups are the primary group first (BuildKit always
// passes it), then, when no group was given, those of /etc/group that list the user by name.
// `home` is the passwd entry's home directory, "/" without one (runc's default for HOME). An
// empty spec means root. Throws kiln::Error for an unknown user or group name.
struct ProcessUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
  std::string home = "/";
};
ProcessUser resolve_process_user(std::string_view spec, const std::filesystem::path& root);

}  // namespace kiln::solver
