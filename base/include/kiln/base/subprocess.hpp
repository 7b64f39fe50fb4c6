// Running a helper program to its end (git for repository contexts, docker or podman for
// --load): standard input /dev/null, standard output and error into one log file.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kiln {

// Runs argv (argv[0] looked up in PATH) with the caller's environment and returns its exit
// status, or 128 + the signal that ended it. Its output goes to `log` (created or truncated).
// Throws kiln::Error naming the program when it cannot be started.
int run_to_end(const std::vector<std::string>& argv, const std::filesystem::path& log);

// Runs argv (looked up in PATH) with `input` on its standard input and returns its exit status
// (or 128 + signal); `out` and `err` receive what it printed on standard output and error. For
// small exchanges (a credential helper's JSON): `input` must fit a pipe's buffer. Throws
// kiln::Error when the program cannot be started.
struct ProgramOutput {
  int status = 0;
  std::string out, err;
};
ProgramOutput run_with_input(const std::vector<std::string>& argv, const std::string& input);

// The path of the executable `name` on $PATH (default /usr/local/bin:/usr/bin:/bin), or "".
std::string find_program(const std::string& name);

// The last non-empty line of a file (what a failing program said last), or "".
std::string last_line_of(const std::filesystem::path& file);

}  // namespace kiln
