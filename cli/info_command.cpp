// `kiln info`: what this machine and this user give kiln — where the store is, whether builds
// are rootless and with which id ranges, which RUN backends and cgroups exist, which foreign
// platforms RUN can emulate, the registry configuration and auth files — as text or JSON, for
// bug reports and for checking a CI runner before the first build.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/base/subprocess.hpp"
#include "kiln/oci/auth_config.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/registries_conf.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/emulation.hpp"
#include "kiln/runner/isolation.hpp"
#include "kiln/runner/sandbox.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace kiln::cli {
namespace {

// The user's ranges in /etc/subuid or /etc/subgid ("100000:65536"), by name or uid.
std::vector<std::string> subordinate_ranges(const fs::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string uid = std::to_string(::getuid());
  const char* user = std::getenv("USER");
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> parts = split(line, ':');
    if (parts.size() == 3 && (parts[0] == uid || (user && parts[0] == user)))
      out.push_back(parts[1] + ":" + parts[2]);
  }
  return out;
}

std::string cgroup_mode() {
  std::error_code ec;
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers", ec))
    return "v2 (unified)";
  if (fs::exists("/sys/fs/cgroup/unified/cgroup.controllers", ec))
    return "hybrid (v1 controllers, v2 beside)";
  if (fs::exists("/sys/fs/cgroup/memory", ec))
    return "v1";
  return "none mounted";
}

}  // namespace

int info_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"info", "kiln info [--format text|json]",
                                "Show what kiln finds on this machine for this user.", 0, 0};
  po::options_description flags("Options");
  flags.add_options()("format", po::value<std::string>()->default_value("text"), "text or json");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::string format = vm["format"].as<std::string>();
  if (format != "text" && format != "json")
    throw UsageError("--format must be text or json", spec.usage);

  nlohmann::ordered_json info;
  info["host"] = {{"platform", oci::host_platform().to_string()},
                  {"uid", ::getuid()},
                  {"rootless", ::geteuid() != 0},
                  {"cgroups", cgroup_mode()}};
  fs::path root = oci::Store::default_root();
  nlohmann::ordered_json store = {{"root", root.string()},
                                  {"from", std::getenv("KILN_ROOT") ? "$KILN_ROOT" : "default"}};
  std::error_code ec;
  if (fs::exists(root / "index.json", ec)) {
    try {
      store["images"] = oci::Store(root).images().size();
    } catch (const Error& e) {
      store["error"] = e.what();
    }
  } else {
    store["images"] = 0;
  }
  info["store"] = store;
  info["rootless"] = {{"subuid", subordinate_ranges("/etc/subuid")},
                      {"subgid", subordinate_ranges("/etc/subgid")},
                      {"newuidmap", find_program("newuidmap")},
                      {"newgidmap", find_program("newgidmap")}};
  nlohmann::ordered_json runtimes = nlohmann::ordered_json::array();
  for (const char* r : {"runc", "crun"}) {
    if (std::string p = find_program(r); !p.empty())
      runtimes.push_back(p);
  }
  nlohmann::ordered_json isolation;
  try {
    runner::IsolationChoice choice = runner::choose_isolation(runner::Isolation::kAuto);
    isolation["auto"] = choice.mode == runner::Isolation::kChroot ? "chroot" : "sandbox";
    isolation["detail"] = choice.line.empty() ? "kiln's sandbox with every namespace it uses and "
                                                "a /proc of its own"
                                              : choice.line;
    isolation["single_id"] = choice.single_id;
  } catch (const Error& e) {
    isolation["error"] = e.what();
  }
  std::string problem = runner::private_network_problem();
  info["runner"] = {{"default", "built-in namespace sandbox"},
                    {"oci_runtimes", runtimes},
                    {"isolation", isolation},
                    {"run_network", problem.empty() ? "private, through " + runner::network_helper()
                                                    : "shared with this machine: " + problem}};
  nlohmann::ordered_json emulated = nlohmann::ordered_json::array();
  for (const char* platform : {"linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x",
                               "linux/riscv64", "linux/386", "linux/amd64"}) {
    oci::Platform p = oci::parse_platform(platform);
    if (p.to_string() != oci::host_platform().to_string() && !runner::cannot_run(p))
      emulated.push_back(p.to_string());
  }
  info["emulation"] = {{"run_platforms", emulated}};
  nlohmann::ordered_json registries;
  try {
    oci::RegistriesConf conf = oci::load_registries_conf();
    registries["search"] = conf.unqualified_search;
    registries["insecure"] = conf.insecure();
    nlohmann::ordered_json entries = nlohmann::ordered_json::array();
    for (const oci::RegistryEntry& e : conf.registries) {
      nlohmann::ordered_json mirrors = nlohmann::ordered_json::array();
      for (const oci::RegistryMirror& m : e.mirrors)
        mirrors.push_back(m.location);
      entries.push_back({{"prefix", e.prefix},
                         {"location", e.location},
                         {"blocked", e.blocked},
                         {"mirrors", mirrors}});
    }
    registries["registries"] = entries;
  } catch (const Error& e) {
    registries["error"] = e.what();
  }
  nlohmann::ordered_json auth = nlohmann::ordered_json::array();
  for (const fs::path& file : oci::auth_files(std::nullopt)) {
    if (fs::exists(file, ec))
      auth.push_back(file.string());
  }
  registries["auth_files"] = auth;
  info["registries"] = registries;

  if (format == "json") {
    io.out << info.dump(2) << "\n";
    return kExitOk;
  }
  // Text: one "section:" line, then "  key: value" lines; lists joined with ", ".
  for (const auto& [section, values] : info.items()) {
    io.out << section << ":\n";
    for (const auto& [key, value] : values.items()) {
      std::string text;
      if (value.is_array()) {
        std::vector<std::string> items;
        for (const auto& item : value)
          items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
        text = items.empty() ? "none" : join(items, ", ");
      } else {
        text = value.is_string() ? value.get<std::string>() : value.dump();
      }
      io.out << "  " << key << ": " << text << "\n";
    }
  }
  return kExitOk;
}

}  // namespace kiln::cli
