// The namespace sandbox, in the manner of bubblewrap and crun.
//
// run() works in two halves. The parent turns the ProcessSpec into a ChildPlan: every path,
// mount step, argv, capability set and the seccomp program, prepared while allocating is still
// allowed. It then clones the child into new namespaces, writes the child's id maps and lets it
// go. The child walks the plan, one small checked function per step, touching only
// async-signal-safe calls and raw syscalls (the parent may be multi-threaded, so a lock some
// other thread held at clone time stays held forever in the child), and execs the program.
//
// Parent and child talk over pipes:
//   sync    parent -> child  one byte once the id maps are written (EOF: give up)
//   report  child -> parent  frames: 'C' a mount target was created, 'E' a setup step failed;
//                            close-on-exec, so EOF without 'E' means the program is running
//   output  child -> parent  the program's stdout and stderr
#include "kiln/runner/sandbox.hpp"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cgroup.hpp"
#include "common.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "private_network.hpp"
#include "seccomp_profile.hpp"

namespace kiln::runner {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// The plan: what the child will do, as data.

enum class StepKind {
  kBind,        // bind `source` (a host path) on `destination`, then set `attributes`
  kFilesystem,  // mount a new `fstype` filesystem on `destination`
  kSymlink,     // create `destination` as a symlink to `source`
  kMask,        // if `destination` exists, hide it: /dev/null over a file, empty tmpfs over a dir
  kReadOnly,    // if `destination` exists, make it a read-only bind of itself
};

enum class TargetType { kDirectory, kFile };

struct MountStep {
  StepKind kind = StepKind::kFilesystem;
  std::string destination;  // absolute, in the container (the rootfs mount: a host path)
  std::string source;
  std::string fstype;
  std::string data;         // filesystem options; empty: none
  unsigned long flags = 0;  // mount(2) flags of a new filesystem
  uint64_t attributes = 0;  // MOUNT_ATTR_* set on a bind after mounting it
  bool recursive = false;   // a bind with its submounts
  TargetType target = TargetType::kDirectory;
  std::string what;  // the step in error messages: "mount proc on /proc"
};

struct ChildPlan {
  int sync_fd = -1;    // read end
  int report_fd = -1;  // write end
  int output_fd = -1;  // write end
  int stdin_fd = -1;   // /dev/null
  // Ends the child must close at once: the parent's ends, so that EOF means what it should.
  int parent_fds[3] = {-1, -1, -1};

  std::string rootfs;  // canonical host path
  std::optional<MountStep> rootfs_mount;
  std::vector<MountStep> steps;

  std::string hostname;
  bool new_network = false;
  std::string cwd;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool may_setgroups = true;  // false when setgroups is denied (by the parent or inherited)

  std::vector<cap_value_t> bounding_drop;
  cap_t capabilities = nullptr;  // effective, permitted, inheritable after the id switch
  bool no_new_privs = false;
  const sock_fprog* seccomp = nullptr;                 // null: no filter
  std::vector<std::pair<int, struct rlimit>> rlimits;  // --ulimit, set before exec

  std::string program;                       // args[0], for messages
  std::vector<std::string> exec_candidates;  // paths execve tries in order
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;  // NUL-terminated views of args and env, see point_views()

  // Points argv and envp at args and env, once the plan is where it stays.
  void point_views() {
    for (std::string& arg : args)
      argv.push_back(arg.data());
    argv.push_back(nullptr);
    for (std::string& variable : env)
      envp.push_back(variable.data());
    envp.push_back(nullptr);
  }
};

constexpr unsigned long kNoSuidDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;

// Host device nodes bind-mounted into the sandbox's /dev tmpfs: a tmpfs mounted in a user
// namespace is always nodev, so nodes created there would not work.
constexpr const char* kDeviceNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

using detail::kMaskedPaths;
using detail::kReadOnlyPaths;

// Docker's and runc's default capability set (the OCI runtime spec example).
constexpr cap_value_t kDefaultCapabilities[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE};

struct MountOptions {
  unsigned long flags = 0;  // for a new filesystem
  uint64_t attributes = 0;  // for a bind
  bool bind = false;
  bool recursive = false;
  std::string data;
};

MountOptions parse_mount_options(const Mount& mount) {
  struct Flag {
    std::string_view name;
    unsigned long flag;
    uint64_t attribute;
  };
  static constexpr Flag kFlags[] = {
      {"ro", MS_RDONLY, MOUNT_ATTR_RDONLY},
      {"rw", 0, 0},
      {"nosuid", MS_NOSUID, MOUNT_ATTR_NOSUID},
      {"nodev", MS_NODEV, MOUNT_ATTR_NODEV},
      {"noexec", MS_NOEXEC, MOUNT_ATTR_NOEXEC},
      {"suid", 0, 0},
      {"dev", 0, 0},
      {"exec", 0, 0},
      {"defaults", 0, 0},
      {"relatime", MS_RELATIME, MOUNT_ATTR_RELATIME},
      {"noatime", MS_NOATIME, MOUNT_ATTR_NOATIME},
      {"strictatime", MS_STRICTATIME, MOUNT_ATTR_STRICTATIME},
      {"nodiratime", MS_NODIRATIME, MOUNT_ATTR_NODIRATIME},
      // Propagation: the sandbox's tree is private as a whole, nothing to do per mount.
      {"private", 0, 0},
      {"rprivate", 0, 0},
      {"shared", 0, 0},
      {"rshared", 0, 0},
      {"slave", 0, 0},
      {"rslave", 0, 0},
      {"unbindable", 0, 0},
      {"runbindable", 0, 0},
  };
  MountOptions parsed;
  parsed.bind = mount.type == "bind";
  for (const std::string& option : mount.options) {
    if (option == "bind" || option == "rbind") {
      parsed.bind = true;
      parsed.recursive = parsed.recursive || option == "rbind";
      continue;
    }
    bool known = false;
    for (const Flag& flag : kFlags) {
      if (option == flag.name) {
        parsed.flags |= flag.flag;
        parsed.attributes |= flag.attribute;
        known = true;
      }
    }
    if (!known) {
      if (!parsed.data.empty())
        parsed.data += ',';
      parsed.data += option;
    }
  }
  return parsed;
}

void check_destination(const std::string& destination) {
  if (destination.empty() || destination[0] != '/')
    throw Error("mount destination \"" + destination + "\" is not an absolute path");
}

// A user mount (or the rootfs mount) as a step.
MountStep user_mount_step(const Mount& mount) {
  MountOptions options = parse_mount_options(mount);
  MountStep step;
  step.destination = mount.destination;
  step.source = mount.source;
  if (options.bind) {
    if (!options.data.empty())
      throw Error("bind mount on " + mount.destination + ": unsupported options " + options.data);
    std::error_code ec;
    fs::file_status status = fs::status(mount.source, ec);
    if (ec)
      throw Error("bind mount " + mount.source + " on " + mount.destination + ": " + ec.message());
    step.kind = StepKind::kBind;
    step.recursive = options.recursive;
    step.attributes = options.attributes;
    step.target = fs::is_directory(status) ? TargetType::kDirectory : TargetType::kFile;
    step.what = "bind mount " + mount.source + " on " + mount.destination;
  } else {
    if (mount.type.empty())
      throw Error("mount on " + mount.destination + ": no filesystem type");
    step.kind = StepKind::kFilesystem;
    step.fstype = mount.type;
    if (step.source.empty())
      step.source = mount.type;
    step.flags = options.flags;
    step.data = options.data;
    step.what = "mount " + mount.type + " on " + mount.destination;
  }
  return step;
}

MountStep filesystem_step(const char* fstype, const char* destination, unsigned long flags,
                          const char* data) {
  MountStep step;
  step.kind = StepKind::kFilesystem;
  step.fstype = fstype;
  step.source = fstype;
  step.destination = destination;
  step.flags = flags;
  step.data = data;
  step.what = std::string("mount ") + fstype + " on " + destination;
  return step;
}

MountStep bind_step(std::string source, std::string destination, TargetType target,
                    uint64_t attributes, bool recursive = false) {
  MountStep step;
  step.kind = StepKind::kBind;
  step.what = "bind mount " + source + " on " + destination;
  step.source = std::move(source);
  step.destination = std::move(destination);
  step.target = target;
  step.attributes = attributes;
  step.recursive = recursive;
  return step;
}

MountStep symlink_step(const char* destination, const char* target) {
  MountStep step;
  step.kind = StepKind::kSymlink;
  step.destination = destination;
  step.source = target;
  step.what = std::string("symlink ") + destination;
  return step;
}

MountStep path_step(StepKind kind, const char* destination) {
  MountStep step;
  step.kind = kind;
  step.destination = destination;
  step.what = (kind == StepKind::kMask ? "mask " : "make read-only ") + step.destination;
  return step;
}

// The standard mounts, in the order bubblewrap and runc make them, then the caller's.
std::vector<MountStep> mount_steps(const ProcessSpec& spec, const fs::path& hosts_file,
                                   const std::string& resolv_conf) {
  std::vector<MountStep> steps;
  if (spec.bind_proc) {
    steps.push_back(bind_step("/proc", "/proc", TargetType::kDirectory,
                              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true));
  } else {
    steps.push_back(filesystem_step("proc", "/proc", kNoSuidDevExec, ""));
  }
  steps.push_back(
      filesystem_step("tmpfs", "/dev", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"));
  for (const char* node : kDeviceNodes) {
    std::string path = std::string("/dev/") + node;
    // A host without /dev/tty (some CI containers) runs sandboxes without one too.
    if (::access(path.c_str(), F_OK) == 0)
      steps.push_back(bind_step(path, path, TargetType::kFile, 0));
  }
  steps.push_back(filesystem_step("devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC,
                                  "newinstance,ptmxmode=0666,mode=0620"));
  steps.push_back(symlink_step("/dev/ptmx", "pts/ptmx"));
  std::string shm = "mode=1777,size=" + spec.shm_size;
  steps.push_back(filesystem_step("tmpfs", "/dev/shm", kNoSuidDevExec, shm.c_str()));
  steps.push_back(filesystem_step("mqueue", "/dev/mqueue", kNoSuidDevExec, ""));
  steps.push_back(symlink_step("/dev/fd", "/proc/self/fd"));
  steps.push_back(symlink_step("/dev/stdin", "/proc/self/fd/0"));
  steps.push_back(symlink_step("/dev/stdout", "/proc/self/fd/1"));
  steps.push_back(symlink_step("/dev/stderr", "/proc/self/fd/2"));
  // A new sysfs needs a network namespace of our own (it shows that namespace's interfaces:
  // only lo, as under BuildKit); sharing the host's network, the host's /sys read-only is what
  // runc gives a rootless container too.
  // A bound /proc goes with a bound /sys: the container masks both.
  if (spec.network != Network::kHost && !spec.bind_proc) {
    steps.push_back(filesystem_step("sysfs", "/sys", MS_RDONLY | kNoSuidDevExec, ""));
    // A new sysfs has no cgroup filesystem under it: the caller's, read-only, so that a step
    // sees its cgroup's limits (/proc/self/cgroup names its path), as with the shared /sys.
    if (::access("/sys/fs/cgroup", F_OK) == 0) {
      steps.push_back(bind_step(
          "/sys/fs/cgroup", "/sys/fs/cgroup", TargetType::kDirectory,
          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true));
    }
  } else {
    steps.push_back(bind_step(
        "/sys", "/sys", TargetType::kDirectory,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true));
  }
  // Privileged steps may mount a new proc (nested containers), which the kernel only allows
  // while the existing one is fully visible. A bound /proc keeps the container's masks.
  if (!spec.privileged && !spec.bind_proc) {
    for (const char* path : kMaskedPaths)
      steps.push_back(path_step(StepKind::kMask, path));
    for (const char* path : kReadOnlyPaths)
      steps.push_back(path_step(StepKind::kReadOnly, path));
  }
  if (spec.hosts) {
    steps.push_back(
        bind_step(hosts_file.string(), "/etc/hosts", TargetType::kFile, MOUNT_ATTR_RDONLY));
  }
  if (!resolv_conf.empty()) {
    if (::access(resolv_conf.c_str(), R_OK) != 0)
      throw Error("resolv.conf " + resolv_conf + ": " + std::strerror(errno));
    steps.push_back(
        bind_step(resolv_conf, "/etc/resolv.conf", TargetType::kFile, MOUNT_ATTR_RDONLY));
  }
  for (const Mount& mount : spec.mounts) {
    check_destination(mount.destination);
    steps.push_back(user_mount_step(mount));
  }
  return steps;
}

using CapPtr = std::unique_ptr<std::remove_pointer_t<cap_t>, int (*)(void*)>;

bool caller_has_capability(cap_value_t capability) {
  CapPtr caps(cap_get_proc(), &cap_free);
  cap_flag_value_t value = CAP_CLEAR;
  return caps && cap_get_flag(caps.get(), capability, CAP_EFFECTIVE, &value) == 0 &&
         value == CAP_SET;
}

// Capabilities as runc sets them (after CVE-2022-24769): the bounding set is the container's
// set; root also gets it as effective and permitted; nobody gets inheritable or ambient ones, so
// a non-root process gains nothing at exec.
CapPtr process_capabilities(const ProcessSpec& spec, const std::vector<cap_value_t>& kept) {
  CapPtr caps(cap_init(), &cap_free);
  if (!caps)
    throw Error(std::string("capabilities: cap_init: ") + std::strerror(errno));
  if (spec.uid == 0 && !kept.empty()) {
    for (cap_flag_t flag : {CAP_EFFECTIVE, CAP_PERMITTED}) {
      if (cap_set_flag(caps.get(), flag, static_cast<int>(kept.size()), kept.data(), CAP_SET) != 0)
        throw Error(std::string("capabilities: cap_set_flag: ") + std::strerror(errno));
    }
  }
  return caps;
}

std::string capability_name(cap_value_t cap) {
  char* raw = cap_to_name(cap);
  if (!raw)
    return {};
  std::string name = raw;
  cap_free(raw);
  for (char& c : name)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

// The default set (every capability when privileged), with --cap-add and --cap-drop applied.
std::vector<cap_value_t> kept_capabilities(const ProcessSpec& spec) {
  std::vector<std::string> defaults, all;
  for (cap_value_t cap : kDefaultCapabilities)
    defaults.push_back(capability_name(cap));
  for (cap_value_t cap = 0; cap < cap_max_bits(); ++cap)
    all.push_back(capability_name(cap));
  std::vector<cap_value_t> kept;
  for (const std::string& name : detail::capability_set(spec, defaults, all)) {
    auto it = std::find(all.begin(), all.end(), name);
    kept.push_back(static_cast<cap_value_t>(it - all.begin()));
  }
  return kept;
}

std::vector<cap_value_t> bounding_drop(const std::vector<cap_value_t>& kept) {
  std::vector<cap_value_t> drop;
  for (cap_value_t cap = 0; cap < cap_max_bits(); ++cap) {
    if (std::find(kept.begin(), kept.end(), cap) == kept.end())
      drop.push_back(cap);
  }
  return drop;
}

// ---------------------------------------------------------------------------------------------
// The child. Everything below until "The parent" runs between clone and execve: no allocation,
// no locks, no exceptions; raw syscalls where libc would coordinate with other threads.

// A NUL-terminated string in a fixed buffer, for messages and paths built in the child.
// Appending past the end truncates and sets overflowed().
template <size_t Capacity>
class FixedString {
 public:
  FixedString& append(std::string_view text) {
    if (text.size() > Capacity - size_) {
      overflowed_ = true;
      text = text.substr(0, Capacity - size_);
    }
    std::memcpy(buffer_ + size_, text.data(), text.size());
    size_ += text.size();
    buffer_[size_] = '\0';
    return *this;
  }
  FixedString& append_number(unsigned value) {
    char digits[16];
    size_t n = 0;
    do {
      digits[sizeof digits - 1 - n++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    return append(std::string_view(digits + sizeof digits - n, n));
  }
  void clear() {
    size_ = 0;
    buffer_[0] = '\0';
  }
  char* data() { return buffer_; }
  const char* c_str() const { return buffer_; }
  std::string_view view() const { return {buffer_, size_}; }
  size_t size() const { return size_; }
  bool overflowed() const { return overflowed_; }

 private:
  char buffer_[Capacity + 1] = {};
  size_t size_ = 0;
  bool overflowed_ = false;
};

// Room for a path and a message about it.
using Text = FixedString<2 * PATH_MAX>;

// "/proc/self/fd/N": mounting on it mounts on exactly the file the descriptor holds, however the
// path to it was resolved.
class FdPath {
 public:
  explicit FdPath(int fd) {
    path_.append("/proc/self/fd/").append_number(static_cast<unsigned>(fd));
  }
  const char* c_str() const { return path_.c_str(); }

 private:
  FixedString<32> path_;
};

enum class ReportType : char { kCreated = 'C', kError = 'E' };

// One frame on the report pipe: type, errno, length, text.
void send_report(int fd, ReportType type, int error, std::string_view text) {
  char header[9];
  header[0] = static_cast<char>(type);
  int32_t error32 = error;
  uint32_t length = static_cast<uint32_t>(text.size());
  std::memcpy(header + 1, &error32, 4);
  std::memcpy(header + 5, &length, 4);
  for (std::string_view part : {std::string_view(header, sizeof header), text}) {
    while (!part.empty()) {
      ssize_t n = ::write(fd, part.data(), part.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return;
      part.remove_prefix(static_cast<size_t>(n));
    }
  }
}

struct Child {
  const ChildPlan& plan;
  int rootfd = -1;
  uint64_t root_mount_id = 0;
};

// Reports the failed step ("WHAT[ PATH]") and errno to the parent, and exits.
[[noreturn]] void fail(const Child& child, std::string_view what, std::string_view path = {},
                       int error = errno) {
  Text message;
  message.append(what);
  if (!path.empty())
    message.append(" ").append(path);
  send_report(child.plan.report_fd, ReportType::kError, error, message.view());
  ::_exit(127);
}

// Opens PATH (absolute, in the container) as an O_PATH descriptor with every symlink and ".."
// resolved inside the rootfs: an image cannot point a mount target at the host.
int open_in_root(const Child& child, const char* path, uint64_t extra_flags = 0) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC | extra_flags;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return openat2_retrying(child.rootfd, path, how);
}

uint64_t mount_id(int fd) {
  struct statx status {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &status) != 0)
    return 0;
  return status.stx_mnt_id;
}

// The in-container path of FD, from /proc/self/fd: the caller names created files by where they
// really are, not by the possibly symlinked path that led there.
bool container_path(const Child& child, int fd, Text& out) {
  char link[PATH_MAX];
  ssize_t n = ::readlink(FdPath(fd).c_str(), link, sizeof link);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof link)
    return false;
  std::string_view path(link, static_cast<size_t>(n));
  std::string_view root = child.plan.rootfs;
  if (!path.starts_with(root))
    return false;
  path.remove_prefix(root.size());
  if (path.empty())
    path = "/";
  else if (path[0] != '/')
    return false;
  out.append(path);
  return !out.overflowed();
}

// Tells the parent that NAME was created in directory PARENT, if that lies on the rootfs mount
// (not on the /dev tmpfs or another mount).
void report_created(const Child& child, int parent, const char* name) {
  if (mount_id(parent) != child.root_mount_id)
    return;
  Text path;
  if (!container_path(child, parent, path))
    return;
  if (path.size() > 1)
    path.append("/");
  path.append(name);
  send_report(child.plan.report_fd, ReportType::kCreated, 0, path.view());
}

// Creates NAME in directory PARENT as TYPE; 0 or -1 with errno.
int create_in(int parent, const char* name, TargetType type) {
  if (type == TargetType::kDirectory)
    return ::mkdirat(parent, name, 0755);
  int fd = ::openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  ::close(fd);
  return 0;
}

// The in-container path a symlink NAME in directory PARENT points to.
bool symlink_target(const Child& child, int parent, const char* name, Text& out) {
  char link[PATH_MAX];
  ssize_t n = ::readlinkat(parent, name, link, sizeof link);
  if (n < 0)
    return false;
  if (static_cast<size_t>(n) >= sizeof link) {
    errno = ENAMETOOLONG;
    return false;
  }
  std::string_view target(link, static_cast<size_t>(n));
  if (target.empty() || target[0] != '/') {
    if (!container_path(child, parent, out)) {
      errno = EXDEV;
      return false;
    }
    out.append("/");
  }
  out.append(target);
  return !out.overflowed();
}

// Opens DESTINATION as a mount target, first creating what is missing: directories on the way
// and the last component as TYPE. A dangling symlink on the way (an image's /etc/resolv.conf ->
// ../run/systemd/resolve/stub-resolv.conf) is followed inside the rootfs and its target
// created, as runc does. -1 with errno on failure.
int open_or_create_target(const Child& child, const char* destination, TargetType type) {
  Text path;
  path.append(destination);
  for (int hops = 0; hops < 40; ++hops) {
    if (path.overflowed()) {
      errno = ENAMETOOLONG;
      return -1;
    }
    int fd = open_in_root(child, path.c_str());
    if (fd >= 0 || errno != ENOENT)
      return fd;
    char* p = path.data();
    size_t size = path.size();
    bool followed_link = false;
    // Walk the prefixes "/a", "/a/b", ... and create the first missing one, then the rest.
    for (size_t end = 1; end <= size && !followed_link; ++end) {
      if ((end < size && p[end] != '/') || p[end - 1] == '/')
        continue;
      char saved = p[end];
      p[end] = '\0';
      int existing = open_in_root(child, p);
      if (existing >= 0) {
        ::close(existing);
        p[end] = saved;
        continue;
      }
      if (errno != ENOENT)
        return -1;
      size_t slash = end - 1;
      while (p[slash] != '/')
        --slash;
      p[slash] = '\0';
      int parent = open_in_root(child, slash == 0 ? "/" : p, O_DIRECTORY);
      p[slash] = '/';
      if (parent < 0)
        return -1;
      const char* name = p + slash + 1;
      bool last = end == size;
      if (create_in(parent, name, last ? type : TargetType::kDirectory) == 0) {
        report_created(child, parent, name);
      } else if (errno == EEXIST) {
        // Something is there that does not resolve: a dangling symlink. Retry with its target
        // in place of the prefix.
        Text next;
        if (!symlink_target(child, parent, name, next)) {
          if (errno == EINVAL) {
            // Not a symlink: a sandbox sharing this rootfs created it a moment ago. Look again.
            ::close(parent);
            p[end] = saved;
            followed_link = true;
            continue;
          }
          int error = errno;
          ::close(parent);
          errno = error;
          return -1;
        }
        ::close(parent);
        p[end] = saved;
        next.append(std::string_view(p + end, size - end));
        path.clear();
        path.append(next.view());
        followed_link = true;
        continue;
      } else {
        int error = errno;
        ::close(parent);
        errno = error;
        return -1;
      }
      ::close(parent);
      p[end] = saved;
    }
    if (!followed_link) {
      // Everything was created; one more open finds it.
      return open_in_root(child, path.c_str());
    }
  }
  errno = ELOOP;
  return -1;
}

int target_or_fail(const Child& child, const MountStep& step, TargetType type) {
  int fd = open_or_create_target(child, step.destination.c_str(), type);
  if (fd < 0)
    fail(child, "create mount target", step.destination);
  return fd;
}

// Sets mount attributes on the mount now at DESTINATION (and below it if RECURSIVE).
// mount_setattr rather than a MS_REMOUNT: it never clears the flags the kernel locked on mounts
// inherited from the host, which a remount would have to repeat exactly.
void set_mount_attributes(const Child& child, const std::string& destination, uint64_t attributes,
                          bool recursive) {
  int fd = open_in_root(child, destination.c_str());
  if (fd < 0)
    fail(child, "open mount", destination);
  mount_attr attr{};
  attr.attr_set = attributes;
  if (attributes & MOUNT_ATTR__ATIME)
    attr.attr_clr = MOUNT_ATTR__ATIME;
  unsigned flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  if (::syscall(SYS_mount_setattr, fd, "", flags, &attr, sizeof attr) != 0)
    fail(child, "set mount flags on", destination);
  ::close(fd);
}

void bind_mount(const Child& child, const MountStep& step) {
  int target = target_or_fail(child, step, step.target);
  unsigned long flags = MS_BIND | (step.recursive ? MS_REC : 0);
  if (::mount(step.source.c_str(), FdPath(target).c_str(), nullptr, flags, nullptr) != 0)
    fail(child, step.what);
  ::close(target);
  if (step.attributes != 0)
    set_mount_attributes(child, step.destination, step.attributes, step.recursive);
}

void mount_filesystem(const Child& child, const MountStep& step) {
  int target = target_or_fail(child, step, TargetType::kDirectory);
  const char* data = step.data.empty() ? nullptr : step.data.c_str();
  if (::mount(step.source.c_str(), FdPath(target).c_str(), step.fstype.c_str(), step.flags, data) !=
      0)
    fail(child, step.what);
  ::close(target);
}

void make_symlink(const Child& child, const MountStep& step) {
  Text parent_path;
  parent_path.append(step.destination);
  char* p = parent_path.data();
  size_t slash = parent_path.size();
  while (slash > 0 && p[slash] != '/')
    --slash;
  p[slash] = '\0';
  int parent = open_in_root(child, slash == 0 ? "/" : p, O_DIRECTORY);
  if (parent < 0 || ::symlinkat(step.source.c_str(), parent, p + slash + 1) != 0)
    fail(child, step.what);
  ::close(parent);
}

// The target of a step that applies only where the path exists: -1 when it does not.
int open_existing_target(const Child& child, const MountStep& step) {
  int target = open_in_root(child, step.destination.c_str());
  if (target < 0 && errno != ENOENT)
    fail(child, step.what);
  return target;
}

void mask_path(const Child& child, const MountStep& step) {
  int target = open_existing_target(child, step);
  if (target < 0)
    return;
  struct stat status {};
  if (::fstat(target, &status) != 0)
    fail(child, step.what);
  int rc =
      S_ISDIR(status.st_mode)
          ? ::mount("tmpfs", FdPath(target).c_str(), "tmpfs", MS_RDONLY | kNoSuidDevExec, nullptr)
          : ::mount("/dev/null", FdPath(target).c_str(), nullptr, MS_BIND, nullptr);
  if (rc != 0)
    fail(child, step.what);
  ::close(target);
}

void make_read_only(const Child& child, const MountStep& step) {
  int target = open_existing_target(child, step);
  if (target < 0)
    return;
  FdPath path(target);
  if (::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    fail(child, step.what);
  ::close(target);
  set_mount_attributes(child, step.destination, MOUNT_ATTR_RDONLY, true);
}

void apply_step(const Child& child, const MountStep& step) {
  switch (step.kind) {
    case StepKind::kBind:
      return bind_mount(child, step);
    case StepKind::kFilesystem:
      return mount_filesystem(child, step);
    case StepKind::kSymlink:
      return make_symlink(child, step);
    case StepKind::kMask:
      return mask_path(child, step);
    case StepKind::kReadOnly:
      return make_read_only(child, step);
  }
}

// Handlers the parent installed must not run here, and what it ignores (SIGPIPE, often) must
// not stay ignored for the program. Signals were blocked across clone; the program starts with
// none blocked.
void reset_signals() {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  for (int signal = 1; signal < NSIG; ++signal)
    ::sigaction(signal, &action, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void wait_for_parent(const Child& child) {
  char byte;
  ssize_t n;
  do {
    n = ::read(child.plan.sync_fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  // EOF: the parent failed to set us up and reports that itself.
  if (n != 1)
    ::_exit(127);
  ::close(child.plan.sync_fd);
}

void make_mounts_private(const Child& child) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    fail(child, "make mounts private");
}

void mount_rootfs(const Child& child) {
  const std::optional<MountStep>& step = child.plan.rootfs_mount;
  if (step) {
    const char* fstype = step->kind == StepKind::kBind ? nullptr : step->fstype.c_str();
    unsigned long flags =
        step->kind == StepKind::kBind ? MS_BIND | (step->recursive ? MS_REC : 0) : step->flags;
    const char* data = step->data.empty() ? nullptr : step->data.c_str();
    if (::mount(step->source.c_str(), child.plan.rootfs.c_str(), fstype, flags, data) != 0)
      fail(child, step->what);
  }
  // pivot_root needs the new root to be a mount point; a bind of the directory onto itself is.
  if (::mount(child.plan.rootfs.c_str(), child.plan.rootfs.c_str(), nullptr, MS_BIND | MS_REC,
              nullptr) != 0)
    fail(child, "bind mount rootfs on itself", child.plan.rootfs);
}

Child open_rootfs(const ChildPlan& plan) {
  Child child{plan};
  child.rootfd = ::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (child.rootfd < 0)
    fail(child, "open rootfs", plan.rootfs);
  child.root_mount_id = mount_id(child.rootfd);
  return child;
}

void pivot_into_rootfs(Child& child) {
  // pivot_root(".", ".") stacks the old root on the new one; detaching "." then drops it, with
  // no directory needed to hold it (runc's trick).
  if (::fchdir(child.rootfd) != 0)
    fail(child, "chdir", child.plan.rootfs);
  if (::syscall(SYS_pivot_root, ".", ".") != 0)
    fail(child, "pivot_root", child.plan.rootfs);
  if (::umount2(".", MNT_DETACH) != 0)
    fail(child, "detach the old root");
  if (::chdir("/") != 0)
    fail(child, "chdir /");
  ::close(child.rootfd);
  child.rootfd = -1;
}

void set_hostname(const Child& child) {
  const std::string& name = child.plan.hostname;
  if (name.empty())
    return;  // ProcessSpec::keep_hostname
  if (::sethostname(name.c_str(), name.size()) != 0)
    fail(child, "sethostname", name);
}

void bring_up_loopback(const Child& child) {
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0)
    fail(child, "socket for lo");
  ifreq request{};
  std::memcpy(request.ifr_name, "lo", 3);
  if (::ioctl(sock, SIOCGIFFLAGS, &request) != 0)
    fail(child, "get flags of lo");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  if (::ioctl(sock, SIOCSIFFLAGS, &request) != 0)
    fail(child, "bring up lo");
  ::close(sock);
}

void redirect_stdio(const Child& child) {
  // A new session has no controlling terminal: the program cannot reach the caller's terminal
  // through /dev/tty, nor get its job-control signals.
  if (::setsid() < 0)
    fail(child, "setsid");
  if (::dup2(child.plan.stdin_fd, 0) < 0 || ::dup2(child.plan.output_fd, 1) < 0 ||
      ::dup2(child.plan.output_fd, 2) < 0)
    fail(child, "redirect stdio");
}

// A working directory that does not exist (an earlier step removed WORKDIR) is created, 0755
// and owned by the process's user, as BuildKit's executor does; it becomes part of the step's
// change like anything else the step writes.
void change_directory(const Child& child) {
  const std::string& cwd = child.plan.cwd;
  if (::chdir(cwd.c_str()) == 0)
    return;
  if (errno != ENOENT || cwd.size() >= PATH_MAX)
    fail(child, "chdir", cwd);
  char path[PATH_MAX];
  std::memcpy(path, cwd.c_str(), cwd.size() + 1);
  for (size_t i = 1; i <= cwd.size(); ++i) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    char saved = path[i];
    path[i] = '\0';
    if (::mkdir(path, 0755) == 0) {
      if (::chown(path, child.plan.uid, child.plan.gid) != 0)
        fail(child, "chown the working directory", path);
    } else if (errno != EEXIST) {
      fail(child, "create the working directory", path);
    }
    path[i] = saved;
  }
  if (::chdir(cwd.c_str()) != 0)
    fail(child, "chdir", cwd);
}

void drop_bounding_set(const Child& child) {
  for (cap_value_t cap : child.plan.bounding_drop) {
    if (cap_drop_bound(cap) != 0)
      fail(child, "drop capability from the bounding set");
  }
}

// Raw syscalls: glibc's set*id would try to switch ids in the parent's other threads too.
void switch_user(const Child& child) {
  const ChildPlan& plan = child.plan;
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
    fail(child, "prctl PR_SET_KEEPCAPS");
  if (plan.may_setgroups && ::syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0)
    fail(child, "setgroups");
  if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0)
    fail(child, "setresgid");
  if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0)
    fail(child, "setresuid");
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
    fail(child, "prctl PR_SET_KEEPCAPS");
}

void apply_capabilities(const Child& child) {
  if (cap_set_proc(child.plan.capabilities) != 0)
    fail(child, "set capabilities");
  if (cap_reset_ambient() != 0)
    fail(child, "clear ambient capabilities");
  // Changing credentials cleared the parent-death signal.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    fail(child, "prctl PR_SET_PDEATHSIG");
}

void set_no_new_privs(const Child& child) {
  if (child.plan.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    fail(child, "prctl PR_SET_NO_NEW_PRIVS");
}

void close_inherited_fds(const Child& child) {
  // Descriptors another thread of the caller opened without O_CLOEXEC must not reach the
  // program. Older kernels without close_range keep them.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0 && errno != ENOSYS && errno != EINVAL)
    fail(child, "close_range");
}

// With no_new_privs: last, so that everything before may use syscalls the profile denies.
void apply_seccomp(const Child& child) {
  if (child.plan.seccomp &&
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, child.plan.seccomp) != 0)
    fail(child, "load seccomp filter");
}

[[noreturn]] void exec_program(const Child& child) {
  const ChildPlan& plan = child.plan;
  int error = ENOENT;
  for (const std::string& candidate : plan.exec_candidates) {
    ::execve(candidate.c_str(), plan.argv.data(), plan.envp.data());
    // As execvp: a file that is not there (or not a directory on the way) means "try the next";
    // a permission problem is remembered in case nothing better turns up.
    if (errno == EACCES)
      error = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR)
      fail(child, "exec", plan.program);
  }
  if (plan.program.find('/') == std::string::npos && error == ENOENT) {
    Text message;
    message.append(plan.program).append(": not found in PATH");
    fail(child, "exec", message.view(), 0);
  }
  fail(child, "exec", plan.program, error);
}

int child_main(void* argument) {
  const ChildPlan& plan = *static_cast<const ChildPlan*>(argument);
  Child early{plan};
  for (int fd : plan.parent_fds)
    ::close(fd);
  reset_signals();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  wait_for_parent(early);

  make_mounts_private(early);
  mount_rootfs(early);
  Child child = open_rootfs(plan);
  for (const MountStep& step : plan.steps)
    apply_step(child, step);
  pivot_into_rootfs(child);

  set_hostname(child);
  if (plan.new_network)
    bring_up_loopback(child);
  redirect_stdio(child);
  change_directory(child);
  // While the process still has CAP_SYS_RESOURCE: a limit may be raised as well as lowered.
  for (const auto& [resource, limit] : plan.rlimits) {
    if (::prlimit(0, static_cast<__rlimit_resource>(resource), &limit, nullptr) != 0)
      fail(child, "set a resource limit (--ulimit)");
  }
  // Without no_new_privs the kernel only lets a process with CAP_SYS_ADMIN load a filter: load
  // it while the process still has every capability of its user namespace (as runc does). The
  // profile allows what follows.
  if (!plan.no_new_privs)
    apply_seccomp(child);
  drop_bounding_set(child);
  switch_user(child);
  apply_capabilities(child);
  set_no_new_privs(child);
  ::umask(022);
  close_inherited_fds(child);
  if (plan.no_new_privs)
    apply_seccomp(child);
  exec_program(child);
}

// ---------------------------------------------------------------------------------------------
// The parent.

struct Pipe {
  UniqueFd read, write;
};

// FD moved to a number above 2 if it is 0, 1 or 2, which the child's dup2s would clobber.
UniqueFd above_stdio(UniqueFd fd, const char* what) {
  if (fd.get() > 2)
    return fd;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0)
    throw Error(std::string("dup ") + what + ": " + std::strerror(errno));
  return UniqueFd(moved);
}

Pipe make_pipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(std::string("pipe for ") + what + ": " + std::strerror(errno));
  return {above_stdio(UniqueFd(fds[0]), what), above_stdio(UniqueFd(fds[1]), what)};
}

// Owns the cloned child: kills and reaps it unless wait() already did.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // The wait status; the child is gone afterwards. Throws kiln::Error if waitpid fails.
  int wait() {
    int status = reap();
    if (status < 0)
      throw Error(std::string("waitpid: ") + std::strerror(errno));
    return status;
  }

 private:
  int reap() noexcept {
    int status = 0;
    pid_t pid = std::exchange(pid_, -1);
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR)
        return -1;
    }
    return status;
  }

  pid_t pid_;
};

pid_t clone_child(ChildPlan& plan, int flags) {
  // The child runs on its own copy of this stack (no CLONE_VM), so it is unmapped here at once.
  constexpr size_t kStackSize = size_t{1} << 20;
  void* stack = ::mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED)
    throw Error(std::string("mmap child stack: ") + std::strerror(errno));
  // The child starts with every signal blocked, so no handler of the caller runs in it before
  // reset_signals() has set them all to the default.
  sigset_t all, previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kStackSize, flags | SIGCHLD, &plan);
  int error = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::munmap(stack, kStackSize);
  if (pid < 0)
    throw Error(std::string("clone: ") + std::strerror(error));
  return pid;
}

struct IdExtent {
  uint64_t inside, count;
};

// The caller's own map, e.g. "0 0 4294967295" for host root, "0 1000 1\n1 100000 65536" after
// newuidmap.
std::vector<IdExtent> read_id_map(const char* path) {
  std::string text = read_file(path);
  std::vector<IdExtent> extents;
  const char* p = text.c_str();
  while (*p) {
    char* end = nullptr;
    uint64_t inside = std::strtoull(p, &end, 10);
    std::strtoull(end, &end, 10);
    uint64_t count = std::strtoull(end, &end, 10);
    if (end == p)
      break;
    extents.push_back({inside, count});
    p = end;
    while (*p == '\n' || *p == ' ')
      ++p;
  }
  if (extents.empty())
    throw Error(std::string("read ") + path + ": no id mapping");
  return extents;
}

void write_proc_file(pid_t pid, const char* name, const std::string& content) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  UniqueFd fd = open_or_throw(path, O_WRONLY);
  // The kernel takes an id map in one write.
  ssize_t n = ::write(fd.get(), content.data(), content.size());
  if (n != static_cast<ssize_t>(content.size()))
    throw Error("write " + path + ": " + (n < 0 ? std::strerror(errno) : "short write"));
}

struct IdMaps {
  std::string uid_map, gid_map;
  bool deny_setgroups = false;  // write "deny" to the child's setgroups before its gid_map
  bool may_setgroups = true;    // whether the child can call setgroups(2) at all
};

// Every id of the caller's user namespace maps to itself, so files in the rootfs keep their
// owners. Without CAP_SETUID and CAP_SETGID (a plain unprivileged caller) the kernel only
// allows mapping one's own ids, and only with setgroups denied: then uid 0 is the caller.
// A user namespace inherits "deny" from its parent (`unshare --map-root-user` sets it).
IdMaps id_maps() {
  IdMaps maps;
  if (caller_has_capability(CAP_SETUID) && caller_has_capability(CAP_SETGID)) {
    for (const IdExtent& e : read_id_map("/proc/self/uid_map"))
      maps.uid_map += std::to_string(e.inside) + " " + std::to_string(e.inside) + " " +
                      std::to_string(e.count) + "\n";
    for (const IdExtent& e : read_id_map("/proc/self/gid_map"))
      maps.gid_map += std::to_string(e.inside) + " " + std::to_string(e.inside) + " " +
                      std::to_string(e.count) + "\n";
    maps.may_setgroups = !read_file("/proc/self/setgroups").starts_with("deny");
  } else {
    maps.uid_map = "0 " + std::to_string(::geteuid()) + " 1\n";
    maps.gid_map = "0 " + std::to_string(::getegid()) + " 1\n";
    maps.deny_setgroups = true;
    maps.may_setgroups = false;
  }
  return maps;
}

void write_id_maps(pid_t pid, const IdMaps& maps) {
  if (maps.deny_setgroups)
    write_proc_file(pid, "setgroups", "deny");
  write_proc_file(pid, "uid_map", maps.uid_map);
  write_proc_file(pid, "gid_map", maps.gid_map);
}

void release_child(const UniqueFd& sync) {
  char byte = 1;
  write_all(sync.get(), &byte, 1, "sandbox sync pipe");
}

// Reads the report pipe to EOF: created mount targets, or the step that failed.
void read_setup_report(int fd, RunResult& result) {
  std::string report = read_all(fd, "sandbox setup report");
  size_t pos = 0;
  while (report.size() - pos >= 9) {
    char type = report[pos];
    int32_t error;
    uint32_t length;
    std::memcpy(&error, report.data() + pos + 1, 4);
    std::memcpy(&length, report.data() + pos + 5, 4);
    pos += 9;
    std::string text = report.substr(pos, length);
    pos += text.size();
    if (type == static_cast<char>(ReportType::kCreated)) {
      result.created_mountpoints.push_back(std::move(text));
    } else {
      throw Error(error == 0 ? text : text + ": " + std::strerror(error));
    }
  }
}

void write_hosts_file(const fs::path& path, const ProcessSpec& spec) {
  std::string content = detail::hosts_file_content(spec);
  UniqueFd fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  write_all(fd.get(), content.data(), content.size(), path.string());
}

fs::path canonical_rootfs(const fs::path& rootfs) {
  std::error_code ec;
  fs::path canonical = fs::canonical(rootfs, ec);
  if (ec)
    throw Error("rootfs " + rootfs.string() + ": " + ec.message());
  if (!fs::is_directory(canonical))
    throw Error("rootfs " + rootfs.string() + ": not a directory");
  return canonical;
}

// Everything the child needs but its descriptors.
ChildPlan make_plan(const ProcessSpec& spec, const fs::path& hosts_file,
                    const std::string& resolv_conf, const IdMaps& maps) {
  ChildPlan plan;
  plan.rootfs = canonical_rootfs(spec.rootfs).string();
  if (spec.rootfs_mount) {
    plan.rootfs_mount = user_mount_step(*spec.rootfs_mount);
    plan.rootfs_mount->destination = plan.rootfs;
    plan.rootfs_mount->what = "mount " + spec.rootfs_mount->type + " on rootfs " + plan.rootfs;
  }
  plan.steps = mount_steps(spec, hosts_file, resolv_conf);
  plan.hostname = spec.keep_hostname ? std::string() : spec.hostname;
  plan.new_network = spec.network != Network::kHost;
  plan.cwd = spec.cwd;

  if (maps.deny_setgroups && (spec.uid != 0 || spec.gid != 0))
    throw Error("run as uid " + std::to_string(spec.uid) + ", gid " + std::to_string(spec.gid) +
                ": without CAP_SETUID and CAP_SETGID (newuidmap) only the caller's own ids " +
                "can be mapped, as 0");
  // The primary group is in the list too (as BuildKit passes it); alone, it needs no setgroups.
  bool other_groups = std::any_of(spec.groups.begin(), spec.groups.end(),
                                  [&](uint32_t g) { return g != spec.gid; });
  if (!maps.may_setgroups && other_groups)
    throw Error("run with supplementary groups: setgroups is denied in the caller's user " +
                std::string("namespace"));
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.groups.assign(spec.groups.begin(), spec.groups.end());
  plan.may_setgroups = maps.may_setgroups;

  plan.bounding_drop = bounding_drop(kept_capabilities(spec));
  plan.no_new_privs = spec.no_new_privs && !spec.privileged;
  plan.seccomp = spec.privileged || spec.no_seccomp ? nullptr
                 : spec.ignore_chown                ? &detail::chown_ignoring_seccomp_program()
                                                    : &detail::default_seccomp_program();
  for (const ProcessSpec::Rlimit& l : spec.rlimits)
    plan.rlimits.push_back({l.resource, {l.soft, l.hard}});

  plan.program = spec.args[0];
  plan.exec_candidates = detail::exec_candidates(spec);
  plan.args = spec.args;
  plan.env = spec.env;
  return plan;
}

}  // namespace

RunResult Sandbox::run(const ProcessSpec& spec) {
  detail::check_process_spec(spec);
  TempDir scratch({}, "kiln-sandbox-");
  fs::path hosts_file = scratch.path() / "hosts";
  write_hosts_file(hosts_file, spec);
  IdMaps maps = id_maps();
  std::optional<detail::NetworkHelper> helper;
  if (spec.network == Network::kPrivate)
    helper = detail::required_network_helper();
  std::string resolv_conf =
      detail::resolv_conf_for(spec.network, spec.resolv_conf, helper, scratch.path());
  ChildPlan plan = make_plan(spec, hosts_file, resolv_conf, maps);
  plan.point_views();
  CapPtr capabilities = process_capabilities(spec, kept_capabilities(spec));
  plan.capabilities = capabilities.get();

  Pipe sync = make_pipe("sandbox sync");
  Pipe report = make_pipe("sandbox report");
  Pipe output = make_pipe("sandbox output");
  UniqueFd dev_null = above_stdio(open_or_throw("/dev/null", O_RDONLY), "/dev/null");
  plan.sync_fd = sync.read.get();
  plan.report_fd = report.write.get();
  plan.output_fd = output.write.get();
  plan.stdin_fd = dev_null.get();
  plan.parent_fds[0] = sync.write.get();
  plan.parent_fds[1] = report.read.get();
  plan.parent_fds[2] = output.read.get();

  // Made before the child and removed after it is reaped (destroyed after `child`).
  std::optional<detail::Cgroup> cgroup;
  if (!spec.resources.empty())
    cgroup.emplace(spec.resources);

  int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (spec.network != Network::kHost)
    flags |= CLONE_NEWNET;
  ChildProcess child(clone_child(plan, flags));
  sync.read.reset();
  report.write.reset();
  output.write.reset();
  dev_null.reset();

  write_id_maps(child.pid(), maps);
  if (cgroup)
    cgroup->add(child.pid());  // before it runs anything of its own
  // Connected before the program starts; stopped when the run ends.
  std::unique_ptr<detail::AttachedNetwork> network;
  if (helper)
    network = detail::attach_network(*helper, child.pid(), /*join_userns=*/true, scratch.path());
  release_child(sync.write);
  sync.write.reset();

  RunResult result;
  try {
    read_setup_report(report.read.get(), result);
  } catch (const Error&) {
    child.wait();
    throw;
  }
  read_chunks(output.read.get(), "sandbox output", [&](const char* data, size_t size) {
    if (spec.output)
      spec.output(std::string_view(data, size));
  });
  return detail::exit_result(child.wait(), std::move(result));
}

}  // namespace kiln::runner
