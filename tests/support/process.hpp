// Runs programs (the real kiln binary, peer tools) for integration tests and captures what they
// printed.
#pragma once

#include <string>
#include <vector>

namespace kiln::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH when it has no '/') with the rest of argv, in `cwd` (empty:
// the current directory), with `env` ("NAME=value") added to the environment and `input` on
// standard input. Fails the calling test (exit_code -1) if the process cannot start; exit code
// 127 means the program was not found.
ProcessResult run_program(const std::vector<std::string>& argv, const std::string& cwd = {},
                          const std::string& input = {}, const std::vector<std::string>& env = {});

// run_program with KILN_BINARY as the program.
ProcessResult run_kiln(const std::vector<std::string>& args, const std::string& cwd = {},
                       const std::string& input = {}, const std::vector<std::string>& env = {});

}  // namespace kiln::test
