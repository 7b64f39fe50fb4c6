#include "cgroup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::runner::detail {
namespace fs = std::filesystem;

namespace {

struct Hierarchy {
  fs::path mount;    // where it is mounted
  std::string root;  // the cgroup path mounted there ("/" unless a namespace hides more)
  std::string self;  // the cgroup kiln runs in, from /proc/self/cgroup
  bool v2 = false;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw Error("read " + path.string() + ": " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The cgroup mounts: a v1 hierarchy per controller name, and the v2 one (key "").
std::map<std::string, Hierarchy> hierarchies() {
  std::map<std::string, Hierarchy> out;
  // /proc/self/cgroup: "ID:CONTROLLERS:PATH" (v2: "0::PATH").
  std::map<std::string, std::string> self;
  for (const std::string& line : split(read_text("/proc/self/cgroup"), '\n')) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (controllers.empty())
      self[""] = path;
    for (const std::string& c : split(controllers, ','))
      self[c] = path;
  }
  // /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS".
  for (const std::string& line : split(read_text("/proc/self/mountinfo"), '\n')) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos)
      continue;
    std::vector<std::string> head = split(line.substr(0, dash), ' ');
    std::vector<std::string> tail = split(line.substr(dash + 3), ' ');
    if (head.size() < 5 || tail.size() < 3)
      continue;
    Hierarchy h;
    h.root = head[3];
    h.mount = head[4];
    if (tail[0] == "cgroup2") {
      h.v2 = true;
      h.self = self.count("") ? self[""] : "/";
      out.emplace("", h);
    } else if (tail[0] == "cgroup") {
      for (const std::string& option : split(tail[2], ',')) {
        if (option == "rw" || option == "ro" || option.find('=') != std::string::npos)
          continue;
        h.self = self.count(option) ? self[option] : "/";
        out.emplace(option, h);
      }
    }
  }
  return out;
}

// Where cgroup `path` (from the hierarchy's root) is on disk.
fs::path on_disk(const Hierarchy& h, const std::string& path) {
  std::string rel = path;
  if (h.root != "/" && rel.starts_with(h.root))
    rel = rel.substr(h.root.size());
  while (!rel.empty() && rel.front() == '/')
    rel.erase(0, 1);
  return rel.empty() ? h.mount : h.mount / rel;
}

void write_value(const fs::path& file, const std::string& value, const std::string& flag) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    int err = errno;
    throw Error(flag + ": writing " + value + " to " + file.string() + ": " + std::strerror(err) +
                (err == EACCES || err == EROFS || err == EPERM
                     ? " (kiln may not manage cgroups here: run as root, or give --cgroup-parent "
                       "a cgroup delegated to you)"
                     : ""));
  }
}

std::string random_name() {
  std::random_device device;
  std::uniform_int_distribution<uint64_t> dist;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(dist(device)));
  return std::string("kiln-run-") + text;
}

std::string parent_path(const ResourceLimits& limits, const Hierarchy& h) {
  if (limits.cgroup_parent.empty())
    return h.self;
  return limits.cgroup_parent.front() == '/' ? limits.cgroup_parent : "/" + limits.cgroup_parent;
}

// cgroup v2's cpu.weight for v1's cpu.shares (the conversion runc and crun use).
uint64_t shares_to_weight(uint64_t shares) {
  if (shares == 0)
    return 100;
  return 1 + ((std::max<uint64_t>(shares, 2) - 2) * 9999) / 262142;
}

}  // namespace

// --cgroup-parent that does not exist yet is made, as runc and docker do; what was made is
// removed with the cgroup.
void Cgroup::make_parents(const fs::path& parent, const fs::path& mount) {
  std::vector<fs::path> missing;
  for (fs::path p = parent; p != mount && p.has_relative_path() && !fs::exists(p);
       p = p.parent_path())
    missing.push_back(p);
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) != 0 && errno != EEXIST) {
      throw Error("creating the cgroup " + it->string() + ": " + std::strerror(errno) +
                  " (run as root, or give --cgroup-parent a cgroup delegated to you)");
    }
    dirs_.push_back(*it);
  }
}

Cgroup::Cgroup(const ResourceLimits& limits) {
  std::map<std::string, Hierarchy> all = hierarchies();
  // Which controllers the limits need; with --cgroup-parent alone, memory and pids.
  std::set<std::string> needed;
  if (limits.memory || limits.memory_swap)
    needed.insert("memory");
  if (limits.cpu_shares || limits.cpu_period || limits.cpu_quota)
    needed.insert("cpu");
  if (!limits.cpuset_cpus.empty() || !limits.cpuset_mems.empty())
    needed.insert("cpuset");
  if (needed.empty())
    needed = {"memory", "pids"};

  std::string name = random_name();
  std::optional<Hierarchy> v2;
  if (auto it = all.find(""); it != all.end())
    v2 = it->second;
  std::set<std::string> v2_controllers;
  if (v2) {
    try {
      for (const std::string& c : split(trim(read_text(v2->mount / "cgroup.controllers")), ' '))
        v2_controllers.insert(c);
    } catch (const Error&) {
    }
  }
  try {
    std::vector<std::string> on_v2;
    for (const std::string& controller : needed) {
      auto it = all.find(controller);
      if (it != all.end() && !it->second.v2) {
        const Hierarchy& h = it->second;
        fs::path parent = on_disk(h, parent_path(limits, h));
        make_parents(parent, h.mount);
        fs::path dir = parent / name;
        if (::mkdir(dir.c_str(), 0755) != 0) {
          int err = errno;
          throw Error("creating the cgroup " + dir.string() + ": " + std::strerror(err) +
                      (err == EACCES || err == EROFS || err == ENOENT
                           ? " (run as root, or give --cgroup-parent an existing cgroup you may "
                             "write to)"
                           : ""));
        }
        dirs_.push_back(dir);
        if (controller == "memory") {
          if (limits.memory)
            write_value(dir / "memory.limit_in_bytes", std::to_string(*limits.memory), "--memory");
          if (limits.memory_swap) {
            if (!fs::exists(dir / "memory.memsw.limit_in_bytes")) {
              throw Error(
                  "--memory-swap: this kernel does not account swap in cgroup v1 "
                  "(memory.memsw.limit_in_bytes is missing; boot with swapaccount=1)");
            }
            write_value(dir / "memory.memsw.limit_in_bytes", std::to_string(*limits.memory_swap),
                        "--memory-swap");
          }
        } else if (controller == "cpu") {
          if (limits.cpu_shares)
            write_value(dir / "cpu.shares", std::to_string(*limits.cpu_shares), "--cpu-shares");
          if (limits.cpu_period)
            write_value(dir / "cpu.cfs_period_us", std::to_string(*limits.cpu_period),
                        "--cpu-period");
          if (limits.cpu_quota)
            write_value(dir / "cpu.cfs_quota_us", std::to_string(*limits.cpu_quota), "--cpu-quota");
        } else if (controller == "cpuset") {
          // A v1 cpuset starts empty and takes no task until both are set: the parent's by
          // default.
          std::string cpus = limits.cpuset_cpus.empty()
                                 ? std::string(trim(read_text(parent / "cpuset.cpus")))
                                 : limits.cpuset_cpus;
          std::string mems = limits.cpuset_mems.empty()
                                 ? std::string(trim(read_text(parent / "cpuset.mems")))
                                 : limits.cpuset_mems;
          write_value(dir / "cpuset.cpus", cpus, "--cpuset-cpus");
          write_value(dir / "cpuset.mems", mems, "--cpuset-mems");
        }
        continue;
      }
      if (v2 && v2_controllers.count(controller)) {
        on_v2.push_back(controller);
        continue;
      }
      throw Error("no " + controller + " cgroup controller is available on this machine (" +
                  (v2 ? "cgroup v2 does not offer it" : "none is mounted") + "), so the " +
                  controller + " limits cannot be applied");
    }
    if (!on_v2.empty()) {
      fs::path parent = on_disk(*v2, parent_path(limits, *v2));
      make_parents(parent, v2->mount);
      for (const std::string& controller : on_v2) {
        if (controller == "pids" || controller == "memory" || controller == "cpu" ||
            controller == "cpuset") {
          try {
            write_value(parent / "cgroup.subtree_control", "+" + controller, "cgroup");
          } catch (const Error& e) {
            throw Error(std::string(e.what()) +
                        "; a cgroup v2 parent with processes of its own cannot give its children "
                        "controllers: give --cgroup-parent an empty cgroup kiln may write to");
          }
        }
      }
      fs::path dir = parent / name;
      if (::mkdir(dir.c_str(), 0755) != 0) {
        throw Error("creating the cgroup " + dir.string() + ": " + std::strerror(errno) +
                    " (run as root, or give --cgroup-parent a cgroup delegated to you)");
      }
      dirs_.push_back(dir);
      if (limits.memory)
        write_value(dir / "memory.max", std::to_string(*limits.memory), "--memory");
      if (limits.memory_swap) {
        std::string swap =
            *limits.memory_swap < 0 ? "max"
            : limits.memory
                ? std::to_string(std::max<int64_t>(0, *limits.memory_swap - *limits.memory))
                : std::to_string(*limits.memory_swap);
        write_value(dir / "memory.swap.max", swap, "--memory-swap");
      }
      if (limits.cpu_shares)
        write_value(dir / "cpu.weight", std::to_string(shares_to_weight(*limits.cpu_shares)),
                    "--cpu-shares");
      if (limits.cpu_quota || limits.cpu_period) {
        std::string quota = limits.cpu_quota && *limits.cpu_quota > 0
                                ? std::to_string(*limits.cpu_quota)
                                : std::string("max");
        write_value(dir / "cpu.max",
                    quota + " " + std::to_string(limits.cpu_period.value_or(100000)),
                    "--cpu-quota");
      }
      if (!limits.cpuset_cpus.empty())
        write_value(dir / "cpuset.cpus", limits.cpuset_cpus, "--cpuset-cpus");
      if (!limits.cpuset_mems.empty())
        write_value(dir / "cpuset.mems", limits.cpuset_mems, "--cpuset-mems");
    }
  } catch (...) {
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
      ::rmdir(it->c_str());
    throw;
  }
}

Cgroup::~Cgroup() {
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    // The sandbox's last processes may still be on their way out of the kernel.
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (::rmdir(it->c_str()) == 0 || errno != EBUSY)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

void Cgroup::add(pid_t pid) const {
  for (const fs::path& dir : dirs_)
    write_value(dir / "cgroup.procs", std::to_string(pid), "cgroup");
}

std::string Cgroup::runtime_path(const ResourceLimits& limits, const std::string& name) {
  if (!limits.cgroup_parent.empty()) {
    std::string parent =
        limits.cgroup_parent.front() == '/' ? limits.cgroup_parent : "/" + limits.cgroup_parent;
    return (parent == "/" ? "" : parent) + "/" + name;
  }
  std::map<std::string, Hierarchy> all = hierarchies();
  for (const char* controller : {"memory", ""}) {
    if (auto it = all.find(controller); it != all.end())
      return (it->second.self == "/" ? "" : it->second.self) + "/" + name;
  }
  return "/" + name;
}

}  // namespace kiln::runner::detail
