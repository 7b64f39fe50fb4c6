#include "common.hpp"

#include <unistd.h>

#include <climits>

#include "kiln/base/error.hpp"

namespace kiln::runner::detail {

void check_process_spec(const ProcessSpec& spec) {
  if (spec.args.empty())
    throw Error("run: no command");
  if (spec.cwd.empty() || spec.cwd[0] != '/')
    throw Error("run: working directory \"" + spec.cwd + "\" is not an absolute path");
  if (spec.hostname.empty() || spec.hostname.size() > HOST_NAME_MAX)
    throw Error("run: bad hostname \"" + spec.hostname + "\"");
}

std::string hosts_file_content(const std::string& hostname) {
  return "127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + hostname + "\n";
}

}  // namespace kiln::runner::detail
