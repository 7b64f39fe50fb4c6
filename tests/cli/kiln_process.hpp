// Runs the real kiln binary for integration tests and captures what it printed.
#pragma once

#include <string>
#include <vector>

namespace kiln::test {

struct ProcessResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs KILN_BINARY with `args` in `cwd` (empty: the current directory), feeding `input` on
// standard input. Fails the calling test (and returns exit_code -1) if the process cannot start.
ProcessResult run_kiln(const std::vector<std::string>& args, const std::string& cwd = {},
                       const std::string& input = {});

}  // namespace kiln::test
