// chroot isolation: see kiln/runner/chroot.hpp for what it gives and refuses.
//
// Every path inside the root is opened with openat2(RESOLVE_IN_ROOT) from a descriptor of the
// root, and changed with *at() calls relative to its parent: an image's symlinks cannot make kiln
// create, move or copy anything outside the root.
#include "kiln/runner/chroot.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>

#include "common.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/runner/sandbox.hpp"

namespace fs = std::filesystem;

namespace kiln::runner {

namespace {

int openat2_in_root(int root, const std::string& relative, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return openat2_retrying(root, relative.c_str(), how);
}

std::string fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

// A path's components, without empty ones and ".".
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> parts;
  for (const std::string& p : split(path, '/')) {
    if (!p.empty() && p != ".")
      parts.push_back(p);
  }
  return parts;
}

// The files placed in the root for one step, undone in reverse order by restore().
class RootFiles {
 public:
  explicit RootFiles(const fs::path& rootfs)
      : root_(open_or_throw(rootfs, O_RDONLY | O_DIRECTORY)) {}
  RootFiles(const RootFiles&) = delete;
  RootFiles& operator=(const RootFiles&) = delete;
  ~RootFiles() {
    try {
      restore();
    } catch (const Error&) {
      // The error that unwound us is the one to report.
    }
  }

  // The directory `path` (absolute, inside the root), created with missing parents (0755,
  // root-owned), each creation recorded.
  UniqueFd directory(const std::string& path, bool record = true, int depth = 0) {
    if (depth > 40)
      throw Error("chroot: " + path + ": too many levels of symbolic links");
    UniqueFd dir(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 3));
    std::string so_far;
    for (const std::string& part : components(path)) {
      std::string parent = so_far.empty() ? "/" : so_far;
      so_far += "/" + part;
      int fd = openat2_in_root(root_.get(), so_far, O_RDONLY | O_DIRECTORY);
      if (fd < 0 && errno == ENOENT) {
        // A dangling symlink (an image's absolute link, say) is followed inside the root, as
        // the sandbox's mount targets are: its target is made.
        char target[PATH_MAX];
        ssize_t n = ::readlinkat(dir.get(), part.c_str(), target, sizeof target - 1);
        if (n > 0) {
          target[n] = '\0';
          std::string resolved =
              target[0] == '/' ? std::string(target) : parent + "/" + std::string(target);
          directory(resolved, record, depth + 1);
          fd = openat2_in_root(root_.get(), so_far, O_RDONLY | O_DIRECTORY);
          if (fd < 0)
            throw Error("chroot: open " + so_far + ": " + std::strerror(errno));
          dir.reset(fd);
          continue;
        }
        if (::mkdirat(dir.get(), part.c_str(), 0755) != 0)
          throw Error("chroot: create " + so_far + ": " + std::strerror(errno));
        if (record)
          created_.push_back(so_far);
        fd = openat2_in_root(root_.get(), so_far, O_RDONLY | O_DIRECTORY);
      }
      if (fd < 0)
        throw Error("chroot: open " + so_far + ": " + std::strerror(errno));
      dir.reset(fd);
    }
    return dir;
  }

  // /dev as the sandbox would mount it, made of files.
  void prepare_dev() {
    UniqueFd dev = directory("/dev");
    struct Node {
      const char* name;
      unsigned major, minor;
    };
    static constexpr Node kNodes[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                                      {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    for (const Node& n : kNodes) {
      if (::mknodat(dev.get(), n.name, S_IFCHR | 0666, makedev(n.major, n.minor)) == 0) {
        ::fchmodat(dev.get(), n.name, 0666, 0);  // past the umask
        created_.push_back(std::string("/dev/") + n.name);
      } else if (errno != EEXIST && errno != EPERM) {
        throw Error(std::string("chroot: mknod /dev/") + n.name + ": " + std::strerror(errno));
      }
    }
    static constexpr std::pair<const char*, const char*> kLinks[] = {{"fd", "/proc/self/fd"},
                                                                     {"stdin", "/proc/self/fd/0"},
                                                                     {"stdout", "/proc/self/fd/1"},
                                                                     {"stderr", "/proc/self/fd/2"},
                                                                     {"ptmx", "pts/ptmx"}};
    for (const auto& [name, target] : kLinks) {
      if (::symlinkat(target, dev.get(), name) == 0)
        created_.push_back(std::string("/dev/") + name);
    }
    for (const char* name : {"shm", "pts", "mqueue"}) {
      if (::mkdirat(dev.get(), name, 0755) == 0) {
        if (std::string_view(name) == "shm")
          ::fchmodat(dev.get(), name, 01777, 0);
        created_.push_back(std::string("/dev/") + name);
      }
    }
  }

  // A file with `content` at `path` when the root has nothing there.
  void write_if_missing(const std::string& path, const std::string& content) {
    fs::path p(path);
    UniqueFd parent = directory(p.parent_path().string());
    int fd = ::openat(parent.get(), p.filename().c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST)
        return;  // the image's own (or a symlink of it): left as it is
      throw Error("chroot: create " + path + ": " + std::strerror(errno));
    }
    UniqueFd file(fd);
    write_all(file.get(), content.data(), content.size(), "chroot: " + path);
    created_.push_back(path);
    emptied_.push_back(path);
  }

  // The caller's mount, as files.
  void place(const Mount& mount) {
    bool bind = mount.type == "bind" ||
                std::find_if(mount.options.begin(), mount.options.end(), [](const std::string& o) {
                  return o == "bind" || o == "rbind";
                }) != mount.options.end();
    if (!bind && mount.type != "tmpfs")
      throw Error("chroot isolation cannot mount " + mount.type + " on " + mount.destination);
    bool read_only =
        std::find(mount.options.begin(), mount.options.end(), "ro") != mount.options.end();
    fs::path dest(mount.destination);
    if (!dest.is_absolute() || components(mount.destination).empty())
      throw Error("chroot: mount destination " + quote(mount.destination) + " is not a path");
    Placed placed;
    placed.destination = mount.destination;
    placed.name = fs::path(mount.destination).filename().string();
    placed.parent = directory(dest.parent_path().string());
    struct stat st {};
    bool source_dir = !bind || (::stat(mount.source.c_str(), &st) == 0 && S_ISDIR(st.st_mode));
    if (bind && ::stat(mount.source.c_str(), &st) != 0)
      throw Error("chroot: bind source " + mount.source + ": " + std::strerror(errno));
    struct stat old {};
    if (::fstatat(placed.parent.get(), placed.name.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0) {
      placed.hidden = ".kiln-hidden-" + std::to_string(::getpid()) + "-" + placed.name;
      if (::renameat(placed.parent.get(), placed.name.c_str(), placed.parent.get(),
                     placed.hidden.c_str()) != 0)
        throw Error("chroot: move " + mount.destination + " aside: " + std::strerror(errno));
    } else {
      created_.push_back(mount.destination);
    }
    if (source_dir) {
      if (::mkdirat(placed.parent.get(), placed.name.c_str(), 0755) != 0)
        throw Error("chroot: create " + mount.destination + ": " + std::strerror(errno));
    } else {
      int fd = ::openat(placed.parent.get(), placed.name.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0)
        throw Error("chroot: create " + mount.destination + ": " + std::strerror(errno));
      ::close(fd);
    }
    placed.is_dir = source_dir;
    std::string inside = fd_path(placed.parent.get()) + "/" + placed.name;
    if (bind) {
      copy_entry(mount.source, inside, source_dir);
      if (!read_only)
        placed.copy_back_to = mount.source;
    } else {
      ::fchmodat(placed.parent.get(), placed.name.c_str(), 01777, 0);
    }
    placed_.push_back(std::move(placed));
  }

  // rw binds: what the step left at the destination goes back to the source.
  void copy_back() {
    for (const Placed& p : placed_) {
      if (p.copy_back_to.empty())
        continue;
      std::string inside = fd_path(p.parent.get()) + "/" + p.name;
      if (p.is_dir) {
        std::error_code ec;
        for (const fs::directory_entry& e : fs::directory_iterator(p.copy_back_to, ec))
          fs::remove_all(e.path(), ec);
      }
      copy_entry(inside, p.copy_back_to, p.is_dir);
    }
  }

  // Mount contents removed, what they hid put back, written files emptied (the caller removes
  // the created paths once it has diffed the root).
  void restore() {
    while (!placed_.empty()) {
      Placed& p = placed_.back();
      std::string inside = fd_path(p.parent.get()) + "/" + p.name;
      std::error_code ec;
      if (!p.hidden.empty()) {
        fs::remove_all(inside, ec);
        if (::renameat(p.parent.get(), p.hidden.c_str(), p.parent.get(), p.name.c_str()) != 0)
          throw Error("chroot: put " + p.destination + " back: " + std::strerror(errno));
      } else if (p.is_dir) {
        for (const fs::directory_entry& e : fs::directory_iterator(inside, ec))
          fs::remove_all(e.path(), ec);
      } else {
        ::truncate(inside.c_str(), 0);
      }
      placed_.pop_back();
    }
    for (const std::string& path : emptied_) {
      int fd = openat2_in_root(root_.get(), path, O_WRONLY | O_TRUNC | O_NOFOLLOW);
      if (fd >= 0)
        ::close(fd);
    }
    emptied_.clear();
  }

  const std::vector<std::string>& created() const { return created_; }

 private:
  struct Placed {
    std::string destination, name, hidden, copy_back_to;
    UniqueFd parent;
    bool is_dir = false;
  };

  static void copy_entry(const std::string& from, const std::string& to, bool dir) {
    std::error_code ec;
    if (dir) {
      fs::copy(from, to,
               fs::copy_options::recursive | fs::copy_options::copy_symlinks |
                   fs::copy_options::overwrite_existing,
               ec);
    } else {
      fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    }
    if (ec)
      throw Error("chroot: copy " + from + " to " + to + ": " + ec.message());
  }

  UniqueFd root_;
  std::vector<std::string> created_;
  std::vector<std::string> emptied_;
  std::vector<Placed> placed_;
};

void refuse_unsupported(const ProcessSpec& spec) {
  auto refuse = [](const std::string& what) {
    throw Error("chroot isolation cannot give RUN steps " + what +
                " (it makes no namespaces and changes no capabilities)");
  };
  if (spec.network == Network::kNone)
    refuse("--network=none");
  if (spec.network == Network::kPrivate)
    refuse("a private network");
  if (spec.privileged)
    refuse("--security=insecure");
  if (!spec.cap_add.empty() || !spec.cap_drop.empty())
    refuse("--cap-add or --cap-drop");
  if (!spec.resources.empty())
    refuse("cgroup limits");
  if (spec.rootfs_mount)
    refuse("an overlay root (use the copy snapshotter)");
}

// The child's report: which step failed, with errno. Empty (EOF) when execve succeeded.
struct ChildFailure {
  int step;
  int error;
};
constexpr const char* kChildSteps[] = {"chroot", "chdir",     "setgroups", "setgid",
                                       "setuid", "setrlimit", "exec"};

}  // namespace

RunResult ChrootRunner::run(const ProcessSpec& spec) {
  detail::check_process_spec(spec);
  refuse_unsupported(spec);
  std::error_code ec;
  fs::path rootfs = fs::canonical(spec.rootfs, ec);
  if (ec || !fs::is_directory(rootfs))
    throw Error("rootfs " + spec.rootfs.string() + ": " +
                (ec ? ec.message() : std::string("not a directory")));

  RootFiles files(rootfs);
  files.prepare_dev();
  files.directory("/proc");
  files.directory("/sys");
  if (spec.hosts)
    files.write_if_missing("/etc/hosts", detail::hosts_file_content(spec));
  if (!spec.resolv_conf.empty())
    files.write_if_missing("/etc/resolv.conf", read_file(spec.resolv_conf));
  for (const Mount& m : spec.mounts)
    files.place(m);
  {
    // The working directory, as the sandbox makes it: 0755, owned by the user; part of the step.
    std::vector<std::string> parts = components(spec.cwd);
    std::string so_far;
    UniqueFd dir = files.directory("/", false);
    for (const std::string& part : parts) {
      so_far += "/" + part;
      bool made = ::mkdirat(dir.get(), part.c_str(), 0755) == 0;
      if (made && ::fchownat(dir.get(), part.c_str(), spec.uid, spec.gid, AT_SYMLINK_NOFOLLOW) != 0)
        throw Error("chroot: chown " + so_far + ": " + std::strerror(errno));
      dir = files.directory(so_far, false);
    }
  }

  // Everything the child needs, prepared before fork.
  std::vector<std::string> candidates = detail::exec_candidates(spec);
  std::vector<char*> argv, envp;
  std::vector<std::string> args = spec.args, env = spec.env;
  for (std::string& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<gid_t> groups(spec.groups.begin(), spec.groups.end());
  std::vector<std::pair<int, rlimit>> limits;
  for (const ProcessSpec::Rlimit& l : spec.rlimits)
    limits.push_back({l.resource, {l.soft, l.hard}});
  std::string root = rootfs.string();

  int out_fds[2], report_fds[2];
  if (::pipe2(out_fds, O_CLOEXEC) != 0 || ::pipe2(report_fds, O_CLOEXEC) != 0)
    throw Error(std::string("chroot: pipe: ") + std::strerror(errno));
  UniqueFd out_read(out_fds[0]), out_write(out_fds[1]);
  UniqueFd report_read(report_fds[0]), report_write(report_fds[1]);
  UniqueFd dev_null = open_or_throw("/dev/null", O_RDONLY);

  pid_t pid = ::fork();
  if (pid < 0)
    throw Error(std::string("chroot: fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls from here: the caller may have threads.
    auto fail = [&](int step) {
      ChildFailure f{step, errno};
      (void)!::write(report_write.get(), &f, sizeof f);
      ::_exit(127);
    };
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s)
      ::signal(s, SIG_DFL);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    ::setsid();
    ::dup2(dev_null.get(), 0);
    ::dup2(out_write.get(), 1);
    ::dup2(out_write.get(), 2);
    if (::chroot(root.c_str()) != 0)
      fail(0);
    if (::chdir(spec.cwd.c_str()) != 0)
      fail(1);
    if (::setgroups(groups.size(), groups.data()) != 0)
      fail(2);
    if (::setresgid(spec.gid, spec.gid, spec.gid) != 0)
      fail(3);
    if (::setresuid(spec.uid, spec.uid, spec.uid) != 0)
      fail(4);
    for (const auto& [resource, limit] : limits) {
      if (::prlimit(0, static_cast<__rlimit_resource>(resource), &limit, nullptr) != 0)
        fail(5);
    }
    if (spec.no_new_privs)
      ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ::umask(022);
    int last = ENOENT;
    for (const std::string& c : candidates) {
      ::execve(c.c_str(), argv.data(), envp.data());
      if (errno != ENOENT && errno != ENOTDIR)
        last = errno;
    }
    errno = last;
    fail(6);
  }
  out_write.reset();
  report_write.reset();
  dev_null.reset();

  auto reap = [pid] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR)
        throw Error(std::string("chroot: waitpid: ") + std::strerror(errno));
    }
    return status;
  };
  ChildFailure failure{};
  std::string report = read_all(report_read.get(), "chroot report");
  if (report.size() >= sizeof failure) {
    std::memcpy(&failure, report.data(), sizeof failure);
    reap();
    if (failure.step == 6) {
      if (failure.error == ENOENT && spec.args[0].find('/') == std::string::npos)
        throw Error("exec " + spec.args[0] + ": not found in PATH");
      throw Error("exec " + spec.args[0] + ": " + std::strerror(failure.error));
    }
    throw Error(std::string(kChildSteps[failure.step]) +
                (failure.step == 1 ? " " + spec.cwd : std::string()) + ": " +
                std::strerror(failure.error));
  }
  RunResult result;
  try {
    read_chunks(out_read.get(), "chroot output", [&](const char* data, size_t size) {
      if (spec.output)
        spec.output(std::string_view(data, size));
    });
  } catch (...) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    reap();
    throw;
  }
  int status = reap();
  files.copy_back();
  files.restore();
  result.created_mountpoints = files.created();
  return detail::exit_result(status, std::move(result));
}

}  // namespace kiln::runner
