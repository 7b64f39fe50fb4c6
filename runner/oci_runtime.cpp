// RUN through an external OCI runtime: a bundle in a temporary directory, `RUNTIME run`, and
// `RUNTIME delete --force` afterwards.
//
// The runtime is started from a helper thread. When the spec has a rootfs mount (an overlayfs),
// that thread first moves itself into a private mount namespace (unshare(CLONE_NEWNS) is allowed
// per thread, unlike CLONE_NEWUSER) and mounts it there; the runtime inherits the thread's mount
// namespace through posix_spawn, and the thread unmounts it once the runtime is gone. The rest of
// the caller's process never sees the mount, and nothing leaks if kiln dies: the namespace goes
// away with its last process.
//
// The runtime's stdout and stderr are one pipe, which the container process inherits as its own
// (process.terminal is false). Runtime errors therefore cannot be told from program output by
// the stream they arrive on; they are read from the runtime's JSON log (--log) instead: an
// "error" entry there means the runtime failed, whatever the exit code.
#include "kiln/runner/oci_runtime.hpp"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <optional>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cgroup.hpp"
#include "common.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "private_network.hpp"
#include "seccomp_profile.hpp"

extern char** environ;

namespace kiln::runner {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// What the container gets: the same defaults as Sandbox (sandbox.cpp), as OCI data.

// Docker's and runc's default capability set.
constexpr const char* kDefaultCapabilities[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE"};

using detail::kMaskedPaths;
using detail::kReadOnlyPaths;

json seccomp_rule(std::vector<std::string> names, const char* action) {
  return json{{"names", std::move(names)}, {"action", action}};
}

json seccomp_arg(unsigned index, uint64_t value, uint64_t value_two, const char* op) {
  return json{{"index", index}, {"value", value}, {"valueTwo", value_two}, {"op", op}};
}

// The OCI form of the default profile (runner/seccomp_profile.hpp), rule by rule.
json default_seccomp() {
  json syscalls = json::array();
  std::vector<std::string> unconditional;
  for (const detail::SeccompRule& rule : detail::default_seccomp_rules()) {
    if (rule.arg < 0 && !rule.enosys) {
      unconditional.emplace_back(rule.name);
      continue;
    }
    json entry = seccomp_rule({rule.name}, rule.enosys ? "SCMP_ACT_ERRNO" : "SCMP_ACT_ALLOW");
    if (rule.enosys)
      entry["errnoRet"] = ENOSYS;
    if (rule.arg >= 0) {
      const char* op = rule.op == detail::SeccompCompare::kNotEqual      ? "SCMP_CMP_NE"
                       : rule.op == detail::SeccompCompare::kMaskedEqual ? "SCMP_CMP_MASKED_EQ"
                                                                         : "SCMP_CMP_EQ";
      entry["args"] =
          json::array({seccomp_arg(static_cast<unsigned>(rule.arg), rule.a, rule.b, op)});
    }
    syscalls.push_back(std::move(entry));
  }
  syscalls.insert(syscalls.begin(), seccomp_rule(std::move(unconditional), "SCMP_ACT_ALLOW"));
  return json{{"defaultAction", "SCMP_ACT_ERRNO"},
              {"defaultErrnoRet", EPERM},
              {"architectures", detail::default_seccomp_architectures()},
              {"syscalls", std::move(syscalls)}};
}

// "Every capability" for a privileged run: those in kiln's own bounding set.
std::vector<std::string> all_capabilities() {
  std::vector<std::string> names;
  for (cap_value_t cap = 0; cap < cap_max_bits(); ++cap) {
    // The runtime cannot grant what kiln does not hold (a CI container without
    // CAP_SYS_RESOURCE): it would fail with "unable to apply caps".
    if (cap_get_bound(cap) != 1)
      continue;
    char* raw = cap_to_name(cap);
    if (!raw)
      continue;
    std::string name = raw;
    cap_free(raw);
    // libcap spells them "cap_chown"; a capability newer than libcap comes out as a number,
    // which no runtime would accept.
    if (!name.starts_with("cap_"))
      continue;
    for (char& c : name)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    names.push_back(std::move(name));
  }
  return names;
}

// As runc sets them (after CVE-2022-24769): the bounding set is the container's set; root also
// gets it effective and permitted; nobody gets inheritable or ambient ones.
json capabilities(const ProcessSpec& spec) {
  std::vector<std::string> set = detail::capability_set(
      spec,
      std::vector<std::string>(std::begin(kDefaultCapabilities), std::end(kDefaultCapabilities)),
      all_capabilities());
  std::vector<std::string> root_only = spec.uid == 0 ? set : std::vector<std::string>{};
  return json{{"bounding", set},
              {"effective", root_only},
              {"permitted", root_only},
              {"inheritable", json::array()},
              {"ambient", json::array()}};
}

struct IdExtent {
  uint64_t inside, outside, count;
};

std::vector<IdExtent> read_id_map(const char* path) {
  std::istringstream text(read_file(path));
  std::vector<IdExtent> extents;
  IdExtent extent{};
  while (text >> extent.inside >> extent.outside >> extent.count)
    extents.push_back(extent);
  if (extents.empty())
    throw Error(std::string("read ") + path + ": no id mapping");
  return extents;
}

// Host root sees the whole id space mapped to itself; anything else is a user namespace.
bool in_initial_user_namespace() {
  std::vector<IdExtent> extents = read_id_map("/proc/self/uid_map");
  return extents.size() == 1 && extents[0].inside == 0 && extents[0].outside == 0 &&
         extents[0].count == 4294967295u;
}

// Every id of kiln's user namespace maps to itself, so files in the rootfs keep their owners (as
// in Sandbox). hostID is read by the runtime in its own namespace, which is kiln's.
json identity_mappings(const char* path) {
  json mappings = json::array();
  for (const IdExtent& e : read_id_map(path))
    mappings.push_back({{"containerID", e.inside}, {"hostID", e.inside}, {"size", e.count}});
  return mappings;
}

bool has_option(const Mount& mount, std::string_view option) {
  return std::find(mount.options.begin(), mount.options.end(), option) != mount.options.end();
}

bool is_bind(const Mount& mount) {
  return mount.type == "bind" || has_option(mount, "bind") || has_option(mount, "rbind");
}

json oci_mount(const std::string& destination, const std::string& type, const std::string& source,
               std::vector<std::string> options) {
  return json{{"destination", destination},
              {"type", type},
              {"source", source},
              {"options", std::move(options)}};
}

// A caller's mount: binds keep their recursion ("bind" stays non-recursive, as in Sandbox) and
// are explicitly "rw" unless "ro"; other filesystems get their options as given.
json user_mount(const Mount& mount) {
  if (!is_bind(mount))
    return oci_mount(mount.destination, mount.type,
                     mount.source.empty() ? mount.type : mount.source, mount.options);
  std::vector<std::string> options;
  if (!has_option(mount, "bind") && !has_option(mount, "rbind"))
    options.push_back("bind");
  options.insert(options.end(), mount.options.begin(), mount.options.end());
  if (!has_option(mount, "ro") && !has_option(mount, "rw"))
    options.push_back("rw");
  return oci_mount(mount.destination, "bind", mount.source, std::move(options));
}

// The standard mounts, in runc's order (the order Sandbox follows too), then the caller's.
json mounts(const ProcessSpec& spec, bool user_namespace, bool joined_network) {
  json list = json::array();
  if (spec.bind_proc)
    list.push_back(oci_mount("/proc", "bind", "/proc", {"rbind", "nosuid", "noexec", "nodev"}));
  else
    list.push_back(oci_mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  list.push_back(
      oci_mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  // No gid=5: an image need not have a tty group, and the gid need not be mapped.
  list.push_back(oci_mount("/dev/pts", "devpts", "devpts",
                           {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}));
  list.push_back(oci_mount("/dev/shm", "tmpfs", "shm",
                           {"nosuid", "noexec", "nodev", "mode=1777", "size=" + spec.shm_size}));
  list.push_back(oci_mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  // A new sysfs needs a network namespace owned by the container's user namespace; a rootless
  // kiln sharing the host's network gets the caller's /sys read-only instead, as with Sandbox.
  // A joined network namespace (Network::kPrivate) is owned by the caller's user namespace.
  bool own_network =
      spec.network == Network::kNone || (spec.network == Network::kPrivate && !joined_network);
  if (spec.bind_proc || (user_namespace && !own_network))
    list.push_back(oci_mount("/sys", "bind", "/sys", {"rbind", "nosuid", "noexec", "nodev", "ro"}));
  else
    list.push_back(oci_mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  if (spec.hosts)
    list.push_back(oci_mount("/etc/hosts", "bind", "hosts", {"rbind", "ro"}));
  if (!spec.resolv_conf.empty())
    list.push_back(oci_mount("/etc/resolv.conf", "bind", spec.resolv_conf, {"rbind", "ro"}));
  for (const Mount& mount : spec.mounts)
    list.push_back(user_mount(mount));
  return list;
}

// ---------------------------------------------------------------------------------------------
// Mount targets, created before the runtime starts so that run() can report them. Resolved with
// openat2 RESOLVE_IN_ROOT as in Sandbox: an image's symlinks cannot make kiln create anything
// outside the rootfs.

struct Rootfs {
  UniqueFd fd;
  std::string path;  // canonical host path
  uint64_t mount_id = 0;
};

UniqueFd open_in_root(const Rootfs& root, const std::string& path, uint64_t extra_flags = 0) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC | extra_flags;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(openat2_retrying(root.fd.get(), path.c_str(), how));
}

uint64_t mount_id(int fd) {
  struct statx status {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &status) != 0)
    return 0;
  return status.stx_mnt_id;
}

// The in-container path of `fd`: created files are named by where they really are.
std::optional<std::string> container_path(const Rootfs& root, int fd) {
  std::error_code ec;
  std::string path = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string();
  if (ec || !path.starts_with(root.path))
    return std::nullopt;
  path.erase(0, root.path.size());
  if (path.empty())
    return "/";
  if (path[0] != '/')
    return std::nullopt;
  return path;
}

[[noreturn]] void target_error(const std::string& destination, int error) {
  throw Error("create mount target " + destination + ": " + std::strerror(error));
}

// Creates what is missing of `destination` (directories on the way, the last component a file
// if `file`), following dangling symlinks inside the rootfs as runc does, and appends what it
// created on the rootfs mount to `created`.
void create_target(const Rootfs& root, const std::string& destination, bool file,
                   std::vector<std::string>& created) {
  std::string path = destination;
  for (int hops = 0; hops < 40; ++hops) {
    if (open_in_root(root, path))
      return;
    if (errno != ENOENT)
      target_error(destination, errno);
    std::vector<std::string> parts;
    for (const auto& part : fs::path(path).relative_path())
      if (!part.empty() && part != ".")
        parts.push_back(part.string());
    std::string prefix;
    bool followed = false;
    for (size_t i = 0; i < parts.size() && !followed; ++i) {
      std::string current = prefix + "/" + parts[i];
      if (open_in_root(root, current)) {
        prefix = current;
        continue;
      }
      if (errno != ENOENT)
        target_error(destination, errno);
      UniqueFd parent = open_in_root(root, prefix.empty() ? "/" : prefix, O_DIRECTORY);
      if (!parent)
        target_error(destination, errno);
      const std::string& name = parts[i];
      bool last = i + 1 == parts.size();
      int rc = 0;
      if (last && file) {
        UniqueFd fd(::openat(parent.get(), name.c_str(),
                             O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
        rc = fd ? 0 : -1;
      } else {
        rc = ::mkdirat(parent.get(), name.c_str(), 0755);
      }
      if (rc == 0) {
        std::optional<std::string> where = container_path(root, parent.get());
        if (where && mount_id(parent.get()) == root.mount_id)
          created.push_back((*where == "/" ? "" : *where) + "/" + name);
        prefix = current;
        continue;
      }
      if (errno != EEXIST)
        target_error(destination, errno);
      // Something is there that does not resolve: a dangling symlink. Continue from its target.
      char link[PATH_MAX];
      ssize_t n = ::readlinkat(parent.get(), name.c_str(), link, sizeof link);
      if (n < 0 && errno == EINVAL && open_in_root(root, current)) {
        // Not a symlink: a run sharing this rootfs created it a moment ago.
        prefix = current;
        continue;
      }
      if (n < 0 || static_cast<size_t>(n) >= sizeof link)
        target_error(destination, n < 0 && errno != EINVAL ? errno : EEXIST);
      std::string target(link, static_cast<size_t>(n));
      if (target.empty() || target[0] != '/') {
        std::optional<std::string> where = container_path(root, parent.get());
        if (!where)
          target_error(destination, EXDEV);
        target = (*where == "/" ? "" : *where) + "/" + target;
      }
      for (size_t j = i + 1; j < parts.size(); ++j)
        target += "/" + parts[j];
      path = target;
      followed = true;
    }
    if (!followed)
      return;
  }
  target_error(destination, ELOOP);
}

bool is_under(const std::string& path, const std::string& mountpoint) {
  return path.size() > mountpoint.size() && path.starts_with(mountpoint) &&
         (mountpoint == "/" || path[mountpoint.size()] == '/');
}

// The targets of the config's mounts, in order. A destination below an earlier mount lands on
// that mount (the /dev tmpfs, a caller's tmpfs), which the runtime creates it in.
std::vector<std::string> create_targets(const json& config, const fs::path& bundle) {
  Rootfs root;
  root.path = config["root"]["path"].get<std::string>();
  root.fd = UniqueFd(::open(root.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.fd)
    throw Error("open rootfs " + root.path + ": " + std::strerror(errno));
  root.mount_id = mount_id(root.fd.get());
  std::vector<std::string> created;
  std::vector<std::string> mounted;
  for (const json& mount : config["mounts"]) {
    std::string destination =
        fs::path(mount["destination"].get<std::string>()).lexically_normal().string();
    bool below_a_mount = std::any_of(mounted.begin(), mounted.end(), [&](const std::string& m) {
      return is_under(destination, m);
    });
    mounted.push_back(destination);
    if (below_a_mount)
      continue;
    bool file = false;
    if (mount["type"] == "bind") {
      fs::path source = mount["source"].get<std::string>();
      file = !fs::is_directory(source.is_absolute() ? source : bundle / source);
    }
    create_target(root, destination, file, created);
  }
  return created;
}

// ---------------------------------------------------------------------------------------------
// Processes.

std::string find_executable(const std::string& name) {
  if (name.empty())
    throw Error("OCI runtime: no name given");
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) != 0)
      throw Error("OCI runtime " + name + ": " + std::strerror(errno));
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs =
      path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (true) {
    size_t end = std::min(dirs.find(':'), dirs.size());
    std::string candidate = std::string(dirs.substr(0, end)) + "/" + name;
    struct stat status {};
    if (end > 0 && ::stat(candidate.c_str(), &status) == 0 && S_ISREG(status.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (end == dirs.size())
      break;
    dirs.remove_prefix(end + 1);
  }
  throw Error("OCI runtime " + name + ": not found in PATH");
}

// Starts `argv` with stdin from /dev/null and stdout and stderr on `output_fd`, in a new session
// (no controlling terminal) with default signal dispositions and no signal blocked. posix_spawn
// runs the child in the calling thread's namespaces, which is what the helper thread needs.
pid_t spawn(const std::vector<std::string>& argv, int output_fd) {
  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, output_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, output_fd, 2);
  sigset_t none, all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0)
    throw Error("start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      throw Error(std::string("waitpid: ") + std::strerror(errno));
  }
  return status;
}

// mount(2) flags for the rootfs mount's options; the rest is filesystem data (overlay's
// lowerdir=..,upperdir=..,workdir=..).
struct ParsedMount {
  unsigned long flags = 0;
  std::string data;
};

ParsedMount parse_rootfs_mount(const Mount& mount) {
  static constexpr std::pair<std::string_view, unsigned long> kFlags[] = {
      {"ro", MS_RDONLY},       {"rw", 0},
      {"nosuid", MS_NOSUID},   {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},   {"relatime", MS_RELATIME},
      {"noatime", MS_NOATIME}, {"strictatime", MS_STRICTATIME},
      {"bind", MS_BIND},       {"rbind", MS_BIND | MS_REC},
      {"private", 0},          {"rprivate", 0}};
  ParsedMount parsed;
  if (mount.type == "bind")
    parsed.flags |= MS_BIND;
  for (const std::string& option : mount.options) {
    auto known = std::find_if(std::begin(kFlags), std::end(kFlags),
                              [&](const auto& flag) { return flag.first == option; });
    if (known != std::end(kFlags)) {
      parsed.flags |= known->second;
    } else {
      if (!parsed.data.empty())
        parsed.data += ',';
      parsed.data += option;
    }
  }
  return parsed;
}

// The helper thread's mount namespace: private, with the rootfs mount in it.
void mount_rootfs_privately(const Mount& mount, const std::string& rootfs) {
  // CLONE_FS (which CLONE_NEWNS implies anyway): the thread stops sharing its root and cwd with
  // the process, so that only this thread moves to the new namespace.
  if (::unshare(CLONE_NEWNS | CLONE_FS) != 0)
    throw Error(std::string("unshare mount namespace: ") + std::strerror(errno));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    throw Error(std::string("make mounts private: ") + std::strerror(errno));
  ParsedMount parsed = parse_rootfs_mount(mount);
  const char* type = (parsed.flags & MS_BIND) ? nullptr : mount.type.c_str();
  std::string source = mount.source.empty() ? mount.type : mount.source;
  if (::mount(source.c_str(), rootfs.c_str(), type, parsed.flags,
              parsed.data.empty() ? nullptr : parsed.data.c_str()) != 0)
    throw Error("mount " + mount.type + " on rootfs " + rootfs + ": " + std::strerror(errno));
}

// The "error" entries of the runtime's JSON log, one message per line (runc and crun both write
// {"level":"error","msg":"..."}).
std::string logged_errors(const fs::path& log) {
  std::error_code ec;
  if (!fs::exists(log, ec))
    return {};
  std::istringstream lines(read_file(log));
  std::string line, errors;
  while (std::getline(lines, line)) {
    json entry = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!entry.is_object() || entry.value("level", "") != "error")
      continue;
    std::string message = entry.value("msg", "");
    while (!message.empty() && message.back() == '\n')
      message.pop_back();
    if (!errors.empty())
      errors += "; ";
    errors += message;
  }
  return errors;
}

std::string unique_container_id() {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", random());
  return "kiln-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + suffix;
}

void write_text_file(const fs::path& path, const std::string& content) {
  UniqueFd fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  write_all(fd.get(), content.data(), content.size(), path.string());
}

void check_spec(const ProcessSpec& spec) {
  detail::check_process_spec(spec);
  // Checked here rather than left to the runtime, for the same messages as Sandbox.
  if (!spec.resolv_conf.empty() && ::access(spec.resolv_conf.c_str(), R_OK) != 0)
    throw Error("resolv.conf " + spec.resolv_conf + ": " + std::strerror(errno));
  for (const Mount& mount : spec.mounts) {
    if (mount.destination.empty() || mount.destination[0] != '/')
      throw Error("mount destination \"" + mount.destination + "\" is not an absolute path");
    if (is_bind(mount)) {
      std::error_code ec;
      static_cast<void>(fs::status(mount.source, ec));
      if (ec)
        throw Error("bind mount " + mount.source + " on " + mount.destination + ": " +
                    ec.message());
    } else if (mount.type.empty()) {
      throw Error("mount on " + mount.destination + ": no filesystem type");
    }
  }
}

// The helper thread: mounts, creates targets and starts the runtime, then waits for `finished`
// to unmount. Always joined.
class Launcher {
 public:
  struct Started {
    pid_t pid = -1;
    std::vector<std::string> created;
  };

  Launcher(const ProcessSpec& spec, const json& config, const fs::path& bundle,
           const std::vector<std::string>& argv, int output_fd) {
    std::future<Started> started = started_.get_future();
    // Taken here: get_future and set_value on one promise from two threads would race.
    std::future<void> finished = finished_.get_future();
    // The thread uses the constructor's arguments only until `started` is ready, while the
    // constructor waits for it.
    thread_ = std::thread([&, output_fd, finished = std::move(finished)] {
      bool mounted = false;
      std::string rootfs = config["root"]["path"].get<std::string>();
      try {
        if (spec.rootfs_mount) {
          mount_rootfs_privately(*spec.rootfs_mount, rootfs);
          mounted = true;
        }
        Started result;
        result.created = create_targets(config, bundle);
        result.pid = spawn(argv, output_fd);
        started_.set_value(std::move(result));
      } catch (...) {
        started_.set_exception(std::current_exception());
        if (mounted)
          ::umount2(rootfs.c_str(), MNT_DETACH);
        return;
      }
      finished.wait();
      // The runtime is gone. The namespace would go with this thread anyway, but unmounting now
      // releases the overlay's directories at once.
      if (mounted)
        ::umount2(rootfs.c_str(), MNT_DETACH);
    });
    try {
      started_result_ = started.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }
  ~Launcher() { finish(); }
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  const Started& started() const { return started_result_; }

  // Lets the thread unmount and end.
  void finish() {
    if (!thread_.joinable())
      return;
    finished_.set_value();
    thread_.join();
  }

 private:
  std::promise<Started> started_;
  std::promise<void> finished_;
  Started started_result_;
  std::thread thread_;
};

}  // namespace

OciRuntime::OciRuntime(std::string runtime, std::vector<std::string> global_flags)
    : runtime_(std::move(runtime)),
      path_(find_executable(runtime_)),
      global_flags_(std::move(global_flags)) {}

json OciRuntime::make_config(const ProcessSpec& spec, const std::string& rootfs,
                             const std::string& network_path) {
  bool user_namespace = !in_initial_user_namespace();

  json user{{"uid", spec.uid}, {"gid", spec.gid}};
  if (!spec.groups.empty())
    user["additionalGids"] = spec.groups;
  json process{{"terminal", false},
               {"user", std::move(user)},
               {"args", spec.args},
               {"env", spec.env},
               {"cwd", spec.cwd},
               {"capabilities", capabilities(spec)},
               {"noNewPrivileges", spec.no_new_privs && !spec.privileged}};
  if (!spec.rlimits.empty()) {
    static const std::map<int, const char*> kNames = {{RLIMIT_AS, "RLIMIT_AS"},
                                                      {RLIMIT_CORE, "RLIMIT_CORE"},
                                                      {RLIMIT_CPU, "RLIMIT_CPU"},
                                                      {RLIMIT_DATA, "RLIMIT_DATA"},
                                                      {RLIMIT_FSIZE, "RLIMIT_FSIZE"},
                                                      {RLIMIT_LOCKS, "RLIMIT_LOCKS"},
                                                      {RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"},
                                                      {RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"},
                                                      {RLIMIT_NICE, "RLIMIT_NICE"},
                                                      {RLIMIT_NOFILE, "RLIMIT_NOFILE"},
                                                      {RLIMIT_NPROC, "RLIMIT_NPROC"},
                                                      {RLIMIT_RSS, "RLIMIT_RSS"},
                                                      {RLIMIT_RTPRIO, "RLIMIT_RTPRIO"},
                                                      {RLIMIT_RTTIME, "RLIMIT_RTTIME"},
                                                      {RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"},
                                                      {RLIMIT_STACK, "RLIMIT_STACK"}};
    json limits = json::array();
    for (const ProcessSpec::Rlimit& l : spec.rlimits) {
      auto name = kNames.find(l.resource);
      if (name == kNames.end())
        throw Error("run: unknown resource limit " + std::to_string(l.resource));
      limits.push_back({{"type", name->second}, {"hard", l.hard}, {"soft", l.soft}});
    }
    process["rlimits"] = std::move(limits);
  }

  json namespaces =
      json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
  if (spec.network == Network::kNone)
    namespaces.push_back({{"type", "network"}});
  else if (spec.network == Network::kPrivate && !network_path.empty())
    namespaces.push_back({{"type", "network"}, {"path", network_path}});
  else if (spec.network == Network::kPrivate)
    throw Error("run: a private network needs the network namespace to join");
  // Not "linux": that is a predefined macro in GNU mode.
  json linux_config{{"namespaces", std::move(namespaces)}};
  if (user_namespace) {
    linux_config["namespaces"].push_back({{"type", "user"}});
    linux_config["uidMappings"] = identity_mappings("/proc/self/uid_map");
    linux_config["gidMappings"] = identity_mappings("/proc/self/gid_map");
  } else {
    // Host root: without a user namespace, device nodes are real. Deny all but the runtime's
    // default ones (null, zero, tty, ...), as Docker does; mknod stays allowed, open does not.
    linux_config["resources"] = {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}};
  }
  if (!spec.resources.empty()) {
    // The runtime makes and removes the cgroup itself.
    if (user_namespace) {
      throw Error(
          "cgroup limits (--memory, --cpu-*, --cgroup-parent) with --runtime need kiln to run as "
          "root outside a user namespace: a rootless runtime cannot manage cgroups here");
    }
    const ResourceLimits& r = spec.resources;
    json resources =
        linux_config.contains("resources") ? linux_config["resources"] : json::object();
    json memory = json::object();
    if (r.memory)
      memory["limit"] = *r.memory;
    if (r.memory_swap)
      memory["swap"] = *r.memory_swap;
    if (!memory.empty())
      resources["memory"] = std::move(memory);
    json cpu = json::object();
    if (r.cpu_shares)
      cpu["shares"] = *r.cpu_shares;
    if (r.cpu_period)
      cpu["period"] = *r.cpu_period;
    if (r.cpu_quota)
      cpu["quota"] = *r.cpu_quota;
    if (!r.cpuset_cpus.empty())
      cpu["cpus"] = r.cpuset_cpus;
    if (!r.cpuset_mems.empty())
      cpu["mems"] = r.cpuset_mems;
    if (!cpu.empty())
      resources["cpu"] = std::move(cpu);
    linux_config["resources"] = std::move(resources);
    linux_config["cgroupsPath"] = detail::Cgroup::runtime_path(r, unique_container_id());
  }
  if (!spec.privileged) {
    linux_config["maskedPaths"] = kMaskedPaths;
    linux_config["readonlyPaths"] = kReadOnlyPaths;
    if (!spec.no_seccomp)
      linux_config["seccomp"] = default_seccomp();
  }

  return json{{"ociVersion", "1.0.2"},
              {"process", std::move(process)},
              {"root", {{"path", rootfs}, {"readonly", false}}},
              {"hostname", spec.hostname},
              {"mounts", mounts(spec, user_namespace, !network_path.empty())},
              {"linux", std::move(linux_config)}};
}

RunResult OciRuntime::run(const ProcessSpec& spec) {
  check_spec(spec);
  std::error_code ec;
  fs::path rootfs = fs::canonical(spec.rootfs, ec);
  if (ec || !fs::is_directory(rootfs))
    throw Error("rootfs " + spec.rootfs.string() + ": " +
                (ec ? ec.message() : std::string("not a directory")));

  TempDir bundle({}, "kiln-oci-bundle-");
  TempDir state({}, "kiln-oci-state-");
  // The runtime joins a network namespace kiln made and connected (destroyed after the run).
  std::optional<detail::HeldNetwork> network;
  ProcessSpec effective = spec;
  if (spec.network == Network::kPrivate) {
    std::optional<detail::NetworkHelper> helper = detail::required_network_helper();
    network.emplace(*helper, bundle.path());
    effective.resolv_conf =
        detail::resolv_conf_for(spec.network, spec.resolv_conf, helper, bundle.path());
  }
  json config = make_config(effective, rootfs.string(), network ? network->path() : "");
  write_text_file(bundle.path() / "config.json", config.dump(2) + "\n");
  write_text_file(bundle.path() / "hosts", detail::hosts_file_content(spec));
  fs::path log = bundle.path() / "log.json";
  std::string id = unique_container_id();

  std::vector<std::string> global = {path_, "--root=" + state.path().string()};
  global.insert(global.end(), global_flags_.begin(), global_flags_.end());
  std::vector<std::string> run_argv = global;
  run_argv.insert(run_argv.end(), {"--log=" + log.string(), "--log-format=json"});
  // runc as root of a user namespace otherwise tries, and fails, to manage cgroups.
  if (fs::path(path_).filename() == "runc" && config["linux"].contains("uidMappings"))
    run_argv.push_back("--rootless=true");
  run_argv.insert(run_argv.end(), {"run", "--bundle=" + bundle.path().string(), id});
  std::vector<std::string> delete_argv = global;
  delete_argv.insert(delete_argv.end(),
                     {"--log=" + (bundle.path() / "delete.log").string(), "delete", "--force", id});

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw Error(std::string("pipe for runtime output: ") + std::strerror(errno));
  UniqueFd output_read(pipe_fds[0]), output_write(pipe_fds[1]);

  Launcher launcher(effective, config, bundle.path(), run_argv, output_write.get());
  output_write.reset();
  pid_t runtime = launcher.started().pid;
  RunResult result;
  result.created_mountpoints = launcher.started().created;

  // Whatever happens from here on, the container is deleted (killed if it still runs), the
  // runtime reaped and the rootfs mount released, in that order.
  bool reaped = false;
  auto clean_up = [&] {
    try {
      wait_for(spawn(delete_argv, open_or_throw("/dev/null", O_WRONLY).get()));
    } catch (const Error&) {
      // Best effort: the state directory goes away with `state` regardless.
    }
    if (!reaped) {
      ::kill(runtime, SIGKILL);
      wait_for(runtime);
      reaped = true;
    }
    launcher.finish();
  };

  int status = 0;
  try {
    read_chunks(output_read.get(), "runtime output", [&](const char* data, size_t size) {
      if (spec.output)
        spec.output(std::string_view(data, size));
    });
    status = wait_for(runtime);
    reaped = true;
  } catch (...) {
    clean_up();
    throw;
  }
  clean_up();

  std::string errors = logged_errors(log);
  if (!errors.empty())
    throw Error(runtime_ + ": " + errors);
  return detail::exit_result(status, std::move(result));
}

}  // namespace kiln::runner
