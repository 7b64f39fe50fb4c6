#include "kiln/runner/userns.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "common.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::runner {
namespace {

struct Range {
  unsigned long start = 0;
  unsigned long count = 0;
};

// The first range for `user` (by name or number) in /etc/subuid or /etc/subgid.
std::optional<Range> subordinate_range(const std::string& file, const std::string& name,
                                       unsigned long id) {
  std::string content;
  try {
    content = read_file(file);
  } catch (const Error&) {
    return std::nullopt;
  }
  for (const std::string& line : split(content, '\n')) {
    std::vector<std::string> fields = split(line, ':');
    if (fields.size() != 3)
      continue;
    if (fields[0] != name && fields[0] != std::to_string(id))
      continue;
    try {
      return Range{std::stoul(fields[1]), std::stoul(fields[2])};
    } catch (const std::exception&) {
      continue;
    }
  }
  return std::nullopt;
}

void write_proc(pid_t pid, const char* file, const std::string& content) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  UniqueFd fd = open_or_throw(path, O_WRONLY);
  write_all(fd.get(), content.data(), content.size(), path);
}

// Runs `argv` and waits; throws naming the program when it fails.
void run_helper(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  std::vector<std::string> storage = argv;
  for (std::string& a : storage)
    args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0)
    throw Error("fork for " + argv[0] + ": " + std::strerror(errno));
  if (pid == 0) {
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  RunResult exit = detail::exit_result(status);
  if (exit.exit_code != 0) {
    bool not_found = exit.signal == 0 && exit.exit_code == 127;  // execvp failed
    throw Error(join(argv, " ") + " failed" +
                (not_found ? std::string(" (is the uidmap package installed?)")
                           : " with status " + std::to_string(exit.signal ? -1 : exit.exit_code)));
  }
}

}  // namespace

UserNamespaceResult enter_build_user_namespace(
    const std::function<void(const std::string&)>& notice) {
  UserNamespaceResult result;
  if (::geteuid() == 0) {
    // Root keeps its ids but still gets a private mount namespace: the overlays kiln mounts for
    // stage roots then never show in the host's mount table and vanish with the process. In a
    // container that may not mount (no CAP_SYS_ADMIN, Docker's seccomp profile) there is none
    // to make and nothing will be mounted: stage roots are copies there.
    if (::unshare(CLONE_NEWNS) != 0) {
      if (errno == EPERM || errno == ENOSYS)  // refused by capabilities or a seccomp profile
        return result;
      throw Error(std::string("private mount namespace for the build: ") + std::strerror(errno));
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      throw Error(std::string("private mount namespace for the build: ") + std::strerror(errno));
    return result;
  }
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  struct passwd* pw = ::getpwuid(uid);
  std::string name = pw ? pw->pw_name : std::to_string(uid);
  std::optional<Range> uids = subordinate_range("/etc/subuid", name, uid);
  std::optional<Range> gids = subordinate_range("/etc/subgid", name, uid);
  bool ranges = uids && gids && uids->count > 0 && gids->count > 0;

  // The newuidmap helpers must act on us from outside the new namespace, so a child that stays
  // outside waits for our unshare and then writes our maps.
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0)
    throw Error(std::string("pipe: ") + std::strerror(errno));
  UniqueFd go_read(go[0]), go_write(go[1]);
  pid_t self = ::getpid();
  pid_t helper = -1;
  if (ranges) {
    helper = ::fork();
    if (helper < 0)
      throw Error(std::string("fork: ") + std::strerror(errno));
    if (helper == 0) {
      go_write.reset();
      char byte;
      if (::read(go_read.get(), &byte, 1) != 1)
        ::_exit(1);
      try {
        run_helper({"newuidmap", std::to_string(self), "0", std::to_string(uid), "1", "1",
                    std::to_string(uids->start), std::to_string(uids->count)});
        run_helper({"newgidmap", std::to_string(self), "0", std::to_string(gid), "1", "1",
                    std::to_string(gids->start), std::to_string(gids->count)});
      } catch (const Error& e) {
        std::string message = std::string("kiln: ") + e.what() + "\n";
        (void)!::write(2, message.data(), message.size());
        ::_exit(1);
      }
      ::_exit(0);
    }
  }
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
    throw Error(std::string("unshare a user namespace for a rootless build: ") +
                std::strerror(errno) + " (are unprivileged user namespaces enabled?)");
  }
  if (ranges) {
    char byte = 1;
    write_all(go_write.get(), &byte, 1, "id map helper");
    int status = 0;
    while (::waitpid(helper, &status, 0) < 0 && errno == EINTR) {
    }
    if (detail::exit_result(status).exit_code != 0) {
      throw Error("could not map /etc/subuid and /etc/subgid ranges with newuidmap/newgidmap");
    }
    result.mapped_ids = static_cast<unsigned>(uids->count + 1);
  } else {
    write_proc(self, "setgroups", "deny");
    write_proc(self, "uid_map", "0 " + std::to_string(uid) + " 1\n");
    write_proc(self, "gid_map", "0 " + std::to_string(gid) + " 1\n");
    result.single_id = true;
    result.mapped_ids = 1;
    if (notice) {
      notice("kiln: no ranges for " + name +
             " in /etc/subuid and /etc/subgid: using a single-id "
             "user namespace, so files in images can only belong to root");
    }
  }
  if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) {
    throw Error(std::string("become root in the user namespace: ") + std::strerror(errno));
  }
  // Mounts made for the build stay in this namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    throw Error(std::string("make / private in the build namespace: ") + std::strerror(errno));
  }
  result.entered = true;
  return result;
}

}  // namespace kiln::runner
