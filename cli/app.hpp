// The `kiln` command line: command dispatch, usage errors and exit codes.
//
// Exit codes: 0 success; 1 the command failed (bad Containerfile, missing file, build error);
// 2 the command line itself is wrong (unknown command or flag, missing argument) — then one line
// names the problem and the usage line follows, as with other container tools.
#pragma once

#include <iosfwd>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kiln::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// A command-line mistake; what() is the one-line message, usage the command's usage line.
class UsageError : public std::runtime_error {
 public:
  UsageError(const std::string& message, std::string usage)
      : std::runtime_error(message), usage_(std::move(usage)) {}
  const std::string& usage() const { return usage_; }

 private:
  std::string usage_;
};

// Streams the commands write to; tests pass string streams.
struct Io {
  std::ostream& out;
  std::ostream& err;
};

// Runs `kiln ARGS...` (args excludes the program name) and returns the exit code. Never throws.
int run(const std::vector<std::string>& args, Io io);

// Commands: each gets the arguments after its name, throws UsageError or kiln::Error.
int build_command(const std::vector<std::string>& args, Io io);
int parse_command(const std::vector<std::string>& args, Io io);
int images_command(const std::vector<std::string>& args, Io io);
int inspect_command(const std::vector<std::string>& args, Io io);
int tag_command(const std::vector<std::string>& args, Io io);
int rmi_command(const std::vector<std::string>& args, Io io);
int save_command(const std::vector<std::string>& args, Io io);
int push_command(const std::vector<std::string>& args, Io io);
int login_command(const std::vector<std::string>& args, Io io);
int logout_command(const std::vector<std::string>& args, Io io);
int prune_command(const std::vector<std::string>& args, Io io);
int check_command(const std::vector<std::string>& args, Io io);
int key_command(const std::vector<std::string>& args, Io io);
int sign_command(const std::vector<std::string>& args, Io io);
int verify_command(const std::vector<std::string>& args, Io io);
int verify_attestation_command(const std::vector<std::string>& args, Io io);
int manifest_command(const std::vector<std::string>& args, Io io);
int pull_command(const std::vector<std::string>& args, Io io);
int history_command(const std::vector<std::string>& args, Io io);
int load_command(const std::vector<std::string>& args, Io io);
int version_command(const std::vector<std::string>& args, Io io);
int info_command(const std::vector<std::string>& args, Io io);
int unshare_command(const std::vector<std::string>& args, Io io);
int completion_command(const std::vector<std::string>& args, Io io);
int man_pages_command(const std::vector<std::string>& args, Io io);

// The visible commands and their one-line summaries, in --help order.
std::vector<std::pair<std::string, std::string>> command_summaries();

}  // namespace kiln::cli
