// `kiln unshare [COMMAND [ARG...]]`: a shell or a command in the user namespace a build uses (as
// `buildah unshare` and `podman unshare`). A rootless user is root there, with the subordinate
// ids mapped as in a build, and so can read, change and remove what builds left owned by those
// ids (snapshots, `chown`ed files). $KILN_ROOT names the store inside; $KILN_UNSHARE is 1.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ostream>

#include "app.hpp"
#include "kiln/base/error.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/userns.hpp"

namespace kiln::cli {

int unshare_command(const std::vector<std::string>& args, Io io) {
  static const char* usage = "kiln unshare [COMMAND [ARG...]]";
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    io.out << "Usage: " << usage
           << "\n\nRun COMMAND (default: $SHELL, else /bin/sh) in the user namespace builds use: "
              "root\ninside, the subordinate ids of /etc/subuid and /etc/subgid mapped, so that "
              "files a\nrootless build left owned by them can be read and removed.\n";
    return kExitOk;
  }
  if (!args.empty() && args[0].starts_with("-"))
    throw UsageError("unknown flag " + args[0] + " (the command comes after kiln unshare)", usage);
  std::string root = oci::Store::default_root().string();
  runner::enter_build_user_namespace([&](const std::string& notice) { io.err << notice << "\n"; });
  ::setenv("KILN_ROOT", root.c_str(), 0);
  ::setenv("KILN_UNSHARE", "1", 1);
  std::vector<std::string> command = args;
  if (command.empty()) {
    const char* shell = std::getenv("SHELL");
    command.push_back(shell && *shell ? shell : "/bin/sh");
  }
  std::vector<char*> argv;
  for (std::string& a : command)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  io.out.flush();
  io.err.flush();
  ::execvp(argv[0], argv.data());
  throw Error("kiln unshare: cannot run " + command[0] + ": " + std::strerror(errno));
}

}  // namespace kiln::cli
