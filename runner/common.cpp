#include "common.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/runner/oci_runtime.hpp"
#include "kiln/runner/runner.hpp"
#include "kiln/runner/sandbox.hpp"

namespace kiln::runner::detail {

void check_process_spec(const ProcessSpec& spec) {
  if (spec.args.empty())
    throw Error("run: no command");
  if (spec.cwd.empty() || spec.cwd[0] != '/')
    throw Error("run: working directory \"" + spec.cwd + "\" is not an absolute path");
  if (spec.hostname.empty() || spec.hostname.size() > HOST_NAME_MAX)
    throw Error("run: bad hostname \"" + spec.hostname + "\"");
}

std::vector<std::string> capability_set(const ProcessSpec& spec,
                                        const std::vector<std::string>& defaults,
                                        const std::vector<std::string>& all) {
  auto normal = [&](const std::string& name) {
    std::string upper;
    for (char c : name)
      upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (upper != "ALL" && !upper.starts_with("CAP_"))
      upper = "CAP_" + upper;
    if (upper != "ALL" && std::find(all.begin(), all.end(), upper) == all.end())
      throw Error("unknown capability " + quote(name));
    return upper;
  };
  std::vector<std::string> set = spec.privileged ? all : defaults;
  for (const std::string& name : spec.cap_add) {
    std::string cap = normal(name);
    if (cap == "ALL")
      set = all;
    else if (std::find(set.begin(), set.end(), cap) == set.end())
      set.push_back(cap);
  }
  for (const std::string& name : spec.cap_drop) {
    std::string cap = normal(name);
    if (cap == "ALL")
      set.clear();
    else
      std::erase(set, cap);
  }
  return set;
}

std::vector<std::string> exec_candidates(const ProcessSpec& spec) {
  constexpr const char* kDefaultPath =
      "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  const std::string& program = spec.args[0];
  if (program.find('/') != std::string::npos)
    return {program};
  std::string path = kDefaultPath;
  for (const std::string& variable : spec.env) {
    if (variable.starts_with("PATH=")) {
      path = variable.substr(5);
      break;
    }
  }
  std::vector<std::string> candidates;
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos)
      end = path.size();
    std::string directory = path.substr(begin, end - begin);
    // An empty entry means the working directory, as for execvp.
    candidates.push_back((directory.empty() ? "." : directory) + "/" + program);
    begin = end + 1;
  }
  return candidates;
}

std::string hosts_file_content(const ProcessSpec& spec) {
  // BuildKit's hosts file, so a step that reads or copies it sees the same.
  std::string text =
      "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (const auto& [host, ip] : spec.extra_hosts)
    text += ip + "\t" + host + "\n";
  return text;
}

RunResult exit_result(int wait_status, RunResult result) {
  if (WIFSIGNALED(wait_status)) {
    result.signal = WTERMSIG(wait_status);
    result.exit_code = 128 + result.signal;
  } else {
    result.exit_code = WEXITSTATUS(wait_status);
  }
  return result;
}

}  // namespace kiln::runner::detail

namespace kiln::runner {

std::unique_ptr<Runner> make_runner(const std::string& runtime,
                                    const std::vector<std::string>& global_flags) {
  if (runtime.empty()) {
    if (!global_flags.empty())
      throw Error(
          "runtime flags need an OCI runtime (--runtime runc): kiln's own sandbox has none");
    return std::make_unique<Sandbox>();
  }
  return std::make_unique<OciRuntime>(runtime, global_flags);
}

}  // namespace kiln::runner
