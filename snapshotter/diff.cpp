#include "kiln/snapshotter/diff.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include "internal.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kTrustedOverlay = "trusted.overlay.";
constexpr std::string_view kUserOverlay = "user.overlay.";

[[noreturn]] void fail(const std::string& op, const fs::path& path, int err) {
  throw Error(op + " " + path.string() + ": " + std::strerror(err));
}

struct stat lstat_or_throw(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    fail("lstat", path, errno);
  return st;
}

// The names in `dir` other than "." and "..", sorted so that the walk (and its errors) do not
// depend on the file system's directory order.
struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

std::vector<std::string> list_dir(const fs::path& dir) {
  std::unique_ptr<DIR, DirCloser> d(::opendir(dir.c_str()));
  if (!d)
    fail("open directory", dir, errno);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d.get());
    if (!e) {
      if (errno != 0)
        fail("read directory", dir, errno);
      break;
    }
    std::string_view name = e->d_name;
    if (name != "." && name != "..")
      names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string join_path(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// "a/b/c" → "a/b"; "a" → "".
std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_overlay_xattr(std::string_view name) {
  return starts_with(name, kTrustedOverlay) || starts_with(name, kUserOverlay);
}

// The attributes a layer carries, as entries_from_directory chooses them: user.* (meaning the
// same on another machine) and file capabilities; security.selinux and friends are host policy.
// user.overlay.* is overlayfs's own (or a step's escaped copy of it) and would be taken for
// overlay metadata if it reached a later userxattr mount, so it never travels.
bool kept_xattr(std::string_view name) {
  if (name == "security.capability")
    return true;
  return starts_with(name, "user.") && !starts_with(name, kUserOverlay);
}

struct Xattrs {
  std::vector<std::pair<std::string, std::string>> kept;     // sorted by name
  std::vector<std::pair<std::string, std::string>> overlay;  // trusted.overlay.*, user.overlay.*

  // The value of overlayfs's attribute `key` ("opaque", "whiteout", ...) in either namespace.
  std::optional<std::string> overlay_attr(std::string_view key) const {
    for (const auto& [name, value] : overlay) {
      std::string_view n = name;
      if ((starts_with(n, kTrustedOverlay) && n.substr(kTrustedOverlay.size()) == key) ||
          (starts_with(n, kUserOverlay) && n.substr(kUserOverlay.size()) == key))
        return value;
    }
    return std::nullopt;
  }
};

// One llistxattr per file; values are read only for the names that matter. trusted.* is listed
// only with CAP_SYS_ADMIN, so an unprivileged caller sees just the user.overlay.* form.
Xattrs read_xattrs(const fs::path& path, bool want_overlay) {
  Xattrs x;
  for (const std::string& name : detail::xattr_names(path)) {
    bool overlay = is_overlay_xattr(name);
    if ((overlay && !want_overlay) || (!overlay && !kept_xattr(name)))
      continue;
    auto value = detail::xattr_value(path, name);
    if (!value)
      continue;  // removed meanwhile
    (overlay ? x.overlay : x.kept).emplace_back(name, std::move(*value));
  }
  std::sort(x.kept.begin(), x.kept.end());
  return x;
}

// An overlayfs whiteout: the classic 0/0 character device, or the newer empty regular file
// carrying overlay.whiteout (which the kernel honours on lookup even without the parent's "x"
// marker, so it is a deletion either way).
bool is_whiteout(const struct stat& st, const Xattrs* x) {
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0))
    return true;
  return S_ISREG(st.st_mode) && st.st_size == 0 && x && x->overlay_attr("whiteout");
}

// A real file whose name starts with ".wh." would be read back as a whiteout or AUFS metadata.
void check_storable_name(const std::string& rel, const fs::path& host) {
  if (starts_with(base_of(rel), kWhiteoutPrefix)) {
    throw Error(host.string() + ": a file name starting with \".wh.\" cannot be stored in an OCI " +
                "layer (it would be read as a whiteout)");
  }
}

LayerEntry marker_entry(std::string path) {
  LayerEntry e;
  e.path = std::move(path);
  e.mode = S_IFREG;  // mode 0, empty, owned by root, mtime 0: nothing host-dependent
  return e;
}

// "DIR/.wh.NAME" for the in-layer path DIR/NAME.
LayerEntry whiteout_entry(const std::string& rel) {
  return marker_entry(join_path(parent_of(rel), std::string(kWhiteoutPrefix) + base_of(rel)));
}

using detail::HostEntry;

HostEntry entry_item(const fs::path& host, std::string rel, const struct stat& st,
                     std::vector<std::pair<std::string, std::string>> xattrs) {
  HostEntry item = detail::host_entry(host, std::move(rel), st);
  item.entry.xattrs = std::move(xattrs);
  return item;
}

// In-container paths as the sandbox names its mountpoints: "/etc/hosts", "./etc/hosts/" and
// "etc/hosts" are the same path.
std::set<std::string> normalize_excludes(const std::set<std::string>& exclude) {
  std::set<std::string> out;
  for (const std::string& path : exclude) {
    std::string p = detail::relative_path(path);
    if (!p.empty())
      out.insert(std::move(p));
  }
  return out;
}

// Whether `path` is a directory, not following a final symlink. Callers check only paths whose
// parents are already known to be real directories.
bool is_real_dir(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return false;
    fail("lstat", path, errno);
  }
  return S_ISDIR(st.st_mode);
}

std::string escape_option_path(const fs::path& path, const char* what) {
  if (path.empty())
    throw Error(std::string("overlay mount options: empty ") + what + " path");
  std::string out;
  for (char c : fs::absolute(path).string()) {
    if (c == ',' || c == ':' || c == '\\')
      out += '\\';
    out += c;
  }
  return out;
}

// --- copy backend ---

int64_t to_ns(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// FNV-1a over (name, length, value) records: the digest only has to notice a change, and any
// xattr change also moves the ctime, so a 64-bit non-cryptographic hash is plenty.
uint64_t digest_xattrs(const std::vector<std::pair<std::string, std::string>>& xattrs) {
  if (xattrs.empty())
    return 0;
  uint64_t h = 1469598103934665603ULL;
  auto feed = [&](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  for (const auto& [name, value] : xattrs) {
    feed(name);
    feed(std::string_view("\0", 1));
    feed(std::to_string(value.size()));
    feed(std::string_view("\0", 1));
    feed(value);
  }
  return h == 0 ? 1 : h;  // 0 means "no xattrs"
}

std::map<std::string, TreeIndex::Node> scan_nodes(const fs::path& root) {
  struct stat root_st {};
  if (::stat(root.c_str(), &root_st) != 0)
    fail("stat", root, errno);
  if (!S_ISDIR(root_st.st_mode))
    throw Error(root.string() + " is not a directory");
  std::map<std::string, TreeIndex::Node> nodes;
  // An explicit stack, not recursion, so a deep tree cannot overflow the thread's stack.
  std::vector<std::pair<fs::path, std::string>> todo;
  todo.emplace_back(root, "");
  while (!todo.empty()) {
    auto [dir, rel_dir] = std::move(todo.back());
    todo.pop_back();
    for (const std::string& name : list_dir(dir)) {
      fs::path host = dir / name;
      std::string rel = join_path(rel_dir, name);
      struct stat st = lstat_or_throw(host);
      if (S_ISSOCK(st.st_mode))
        continue;  // a tar cannot hold it, so it is not part of the tree
      TreeIndex::Node n;
      n.dev = st.st_dev;
      n.ino = st.st_ino;
      n.mode = st.st_mode;
      n.uid = st.st_uid;
      n.gid = st.st_gid;
      n.nlink = st.st_nlink;
      n.rdev = st.st_rdev;
      n.size = st.st_size;
      n.mtime_ns = to_ns(st.st_mtim);
      n.ctime_ns = to_ns(st.st_ctim);
      if (S_ISLNK(st.st_mode))
        n.link_target = detail::read_link_target(host);
      n.xattr_digest = digest_xattrs(read_xattrs(host, false).kept);
      if (S_ISDIR(st.st_mode))
        todo.emplace_back(host, rel);
      nodes.emplace(std::move(rel), std::move(n));
    }
  }
  return nodes;
}

// Waits until the coarse clock, which file systems take their timestamps from, has passed the
// precise time now. Every timestamp recorded so far is at most that time, and every later
// change stamps a coarse time past it (or a fine-grained one, later still), so a change right
// after the scan cannot keep an identical ctime: the "racy git" problem, solved by waiting one
// tick instead of reading contents. Bounded, in case the clock is stepped backwards meanwhile.
void wait_for_clock_tick() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const int64_t target = to_ns(now);
  for (int i = 0; i < 200; ++i) {
    timespec coarse{};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
    if (to_ns(coarse) > target)
      return;
    timespec pause{0, 500000};  // 0.5 ms; a tick is 1-10 ms
    ::nanosleep(&pause, nullptr);
  }
}

// Whether a node as recorded and as found now are the same: any metadata or ctime change
// counts, and a new inode at the path (a rewrite by rename, a recreated directory) too.
bool unchanged(const TreeIndex::Node& before, const TreeIndex::Node& now) {
  return before == now;
}

// A mount target stub: an empty file or directory, or what chroot isolation puts in /dev instead
// of mounting (a device node, a symlink).
bool stub_mode(mode_t mode, off_t size) {
  return (S_ISREG(mode) && size == 0) || S_ISCHR(mode) || S_ISLNK(mode);
}

bool empty_mountpoint(const TreeIndex::Node& n, const std::string& rel,
                      const std::set<std::string>& nonempty_dirs) {
  if (!S_ISDIR(n.mode))
    return stub_mode(n.mode, static_cast<off_t>(n.size));
  return S_ISDIR(n.mode) && nonempty_dirs.count(rel) == 0;
}

// Directories holding something other than empty mountpoints: /run/secrets, created only to
// hold the stub of /run/secrets/token, is as empty as the stub. In reverse path order every
// descendant comes before its ancestors, so a directory's answer is final when it is reached.
std::set<std::string> nonempty_dirs(const std::map<std::string, TreeIndex::Node>& nodes,
                                    const std::set<std::string>& excluded) {
  std::set<std::string> dirs;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const auto& [rel, node] = *it;
    if (excluded.count(rel) && empty_mountpoint(node, rel, dirs))
      continue;
    std::string parent = parent_of(rel);
    if (!parent.empty())
      dirs.insert(std::move(parent));
  }
  return dirs;
}

// Whether the upper directory `host` holds nothing but empty mountpoints the sandbox created.
bool only_mountpoints(const fs::path& host, const std::string& rel,
                      const std::set<std::string>& excluded) {
  for (const std::string& name : list_dir(host)) {
    std::string child = join_path(rel, name);
    if (!excluded.count(child))
      return false;
    fs::path path = host / name;
    const struct stat st = lstat_or_throw(path);
    if (stub_mode(st.st_mode, st.st_size))
      continue;
    if (!S_ISDIR(st.st_mode) || read_xattrs(path, true).overlay_attr("opaque") ||
        !only_mountpoints(path, child, excluded)) {
      return false;
    }
  }
  return true;
}

HostEntry node_item(const fs::path& host, const std::string& rel, const TreeIndex::Node& n) {
  HostEntry item;
  LayerEntry& e = item.entry;
  e.path = rel;
  e.mode = n.mode;
  e.uid = n.uid;
  e.gid = n.gid;
  // Floor division, so that times before 1970 keep 0 <= nsec < 1e9.
  int64_t sec = n.mtime_ns / 1000000000;
  int64_t nsec = n.mtime_ns % 1000000000;
  if (nsec < 0) {
    nsec += 1000000000;
    --sec;
  }
  e.mtime_sec = sec;
  e.mtime_nsec = nsec;
  if (S_ISREG(n.mode)) {
    e.source = host;
  } else if (S_ISLNK(n.mode)) {
    e.link_target = n.link_target;
  } else if (S_ISCHR(n.mode) || S_ISBLK(n.mode)) {
    e.dev_major = major(n.rdev);
    e.dev_minor = minor(n.rdev);
  } else if (!S_ISDIR(n.mode) && !S_ISFIFO(n.mode)) {
    throw Error(host.string() + ": unsupported file type");
  }
  if (n.xattr_digest != 0)
    e.xattrs = read_xattrs(host, false).kept;
  item.dev = n.dev;
  item.ino = n.ino;
  item.nlink = n.nlink;
  return item;
}

bool in_initial_user_ns_as_root() {
  if (::geteuid() != 0)
    return false;
  // The initial user namespace maps every id onto itself: "0 0 4294967295".
  std::istringstream map(read_file("/proc/self/uid_map"));
  unsigned long inside = 1, outside = 1, count = 0;
  if (!(map >> inside >> outside >> count))
    return false;
  unsigned long more = 0;
  return inside == 0 && outside == 0 && count == 4294967295UL && !(map >> more);
}

}  // namespace

std::string overlay_mount_options(const std::vector<fs::path>& lower, const fs::path& upper,
                                  const fs::path& work, bool userxattr) {
  if (lower.empty())
    throw Error("overlay mount options: no lower directory");
  std::string options = "lowerdir=";
  for (size_t i = 0; i < lower.size(); ++i) {
    if (i > 0)
      options += ':';
    options += escape_option_path(lower[i], "lower");
  }
  options += ",upperdir=" + escape_option_path(upper, "upper");
  options += ",workdir=" + escape_option_path(work, "work");
  if (userxattr)
    options += ",userxattr";
  options += ",redirect_dir=nofollow,metacopy=off";
  // mount(2) copies at most one page of data; a longer string would be cut off silently.
  long page = ::sysconf(_SC_PAGESIZE);
  if (page > 0 && options.size() >= static_cast<size_t>(page)) {
    throw Error("overlay mount options are " + std::to_string(options.size()) +
                " bytes, more than mount(2) accepts (" + std::to_string(page - 1) + ")");
  }
  return options;
}

std::vector<LayerEntry> diff_overlay_upper(const fs::path& upper, const fs::path& lower,
                                           const std::set<std::string>& exclude) {
  const std::set<std::string> excluded = normalize_excludes(exclude);
  if (!S_ISDIR(lstat_or_throw(upper).st_mode))
    throw Error(upper.string() + " is not a directory");

  struct Dir {
    fs::path host;
    std::string rel;
    // Nothing of the lower dir shows through here (the dir is opaque or new, or below one), so
    // a whiteout in it has nothing to hide.
    bool hides_nothing = false;
  };
  std::vector<HostEntry> items;
  std::vector<Dir> todo;
  todo.push_back({upper, "", false});
  while (!todo.empty()) {
    Dir dir = std::move(todo.back());
    todo.pop_back();
    for (const std::string& name : list_dir(dir.host)) {
      fs::path host = dir.host / name;
      std::string rel = join_path(dir.rel, name);
      const struct stat st = lstat_or_throw(host);
      if (S_ISSOCK(st.st_mode))
        continue;  // a tar cannot hold it
      if (is_whiteout(st, nullptr)) {
        if (!dir.hides_nothing)
          items.push_back({whiteout_entry(rel)});
        continue;
      }
      Xattrs x = read_xattrs(host, true);
      if (is_whiteout(st, &x)) {
        if (!dir.hides_nothing)
          items.push_back({whiteout_entry(rel)});
        continue;
      }
      check_storable_name(rel, host);
      for (const char* feature : {"redirect", "metacopy"}) {
        if (x.overlay_attr(feature)) {
          throw Error(host.string() + ": overlay " + feature +
                      " attribute found; a layer cannot express it (mount with "
                      "redirect_dir=nofollow,metacopy=off)");
        }
      }
      const bool is_excluded = excluded.count(rel) > 0;
      if (S_ISDIR(st.st_mode)) {
        auto opaque_value = x.overlay_attr("opaque");
        const bool opaque = opaque_value && *opaque_value == "y";
        if (is_excluded && !opaque && only_mountpoints(host, rel, excluded))
          continue;  // a mountpoint the sandbox created (with only its mountpoints inside)
        const bool hides_nothing =
            dir.hides_nothing || opaque || (!lower.empty() && !is_real_dir(lower / rel));
        items.push_back(entry_item(host, rel, st, std::move(x.kept)));
        if (opaque)
          items.push_back({marker_entry(rel + "/" + std::string(kOpaqueMarker))});
        todo.push_back({std::move(host), std::move(rel), hides_nothing});
      } else {
        if (is_excluded && stub_mode(st.st_mode, st.st_size))
          continue;  // a mountpoint the sandbox created
        items.push_back(entry_item(host, std::move(rel), st, std::move(x.kept)));
      }
    }
  }
  return detail::sorted_with_hard_links(std::move(items));
}

TreeIndex TreeIndex::scan(const fs::path& root) {
  TreeIndex index;
  index.nodes_ = scan_nodes(root);
  wait_for_clock_tick();
  return index;
}

const TreeIndex::Node* TreeIndex::find(const std::string& path) const {
  auto it = nodes_.find(path);
  return it == nodes_.end() ? nullptr : &it->second;
}

namespace {
std::vector<LayerEntry> diff_impl(
    const TreeIndex& before, const fs::path& root, const std::set<std::string>& exclude,
    const std::function<bool(const TreeIndex::Node&, const TreeIndex::Node&)>& unchanged);
}  // namespace

std::vector<LayerEntry> diff_tree(const TreeIndex& before, const fs::path& root,
                                  const std::set<std::string>& exclude) {
  return diff_impl(before, root, exclude, unchanged);
}

std::vector<LayerEntry> diff_trees(const fs::path& before_root, const fs::path& root) {
  // Two separate trees: inode numbers, ctimes and link counts differ whatever the content.
  auto same = [](const TreeIndex::Node& a, const TreeIndex::Node& b) {
    return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.rdev == b.rdev &&
           a.size == b.size && a.mtime_ns == b.mtime_ns && a.link_target == b.link_target &&
           a.xattr_digest == b.xattr_digest;
  };
  return diff_impl(TreeIndex::scan(before_root), root, {}, same);
}

namespace {
std::vector<LayerEntry> diff_impl(
    const TreeIndex& before, const fs::path& root, const std::set<std::string>& exclude,
    const std::function<bool(const TreeIndex::Node&, const TreeIndex::Node&)>& unchanged) {
  const std::set<std::string> excluded = normalize_excludes(exclude);
  const std::map<std::string, TreeIndex::Node> after = scan_nodes(root);
  const std::set<std::string> nonempty_after = nonempty_dirs(after, excluded);
  const std::set<std::string> nonempty_before = nonempty_dirs(before.nodes(), excluded);

  std::set<std::string> emit;  // paths whose current state goes into the layer
  for (const auto& [rel, node] : after) {
    const TreeIndex::Node* old = before.find(rel);
    if (old && unchanged(*old, node))
      continue;
    if (excluded.count(rel) && empty_mountpoint(node, rel, nonempty_after))
      continue;
    emit.insert(rel);
  }

  std::set<std::string> deleted;
  for (const auto& [rel, node] : before.nodes()) {
    if (after.count(rel))
      continue;
    // Only the topmost missing path: if the parent is gone too, or is no longer a directory,
    // the parent's own whiteout or replacement removes this one.
    const std::string parent = parent_of(rel);
    if (!parent.empty()) {
      auto it = after.find(parent);
      if (it == after.end() || !S_ISDIR(it->second.mode))
        continue;
    }
    if (excluded.count(rel) && empty_mountpoint(node, rel, nonempty_before))
      continue;  // a mountpoint the sandbox created and removed again
    deleted.insert(rel);
  }

  // Parents of every change, with their current metadata, so that the layer creates them as they
  // are rather than leaving the applier to invent mode-0755 directories.
  std::set<std::string> parents;
  auto add_parents = [&](const std::string& rel) {
    for (std::string p = parent_of(rel); !p.empty(); p = parent_of(p)) {
      if (!parents.insert(p).second)
        break;  // its ancestors were added with it
    }
  };
  for (const std::string& rel : emit)
    add_parents(rel);
  for (const std::string& rel : deleted)
    add_parents(rel);
  emit.insert(parents.begin(), parents.end());

  std::vector<HostEntry> items;
  items.reserve(emit.size() + deleted.size());
  for (const std::string& rel : emit) {
    const fs::path host = root / rel;
    check_storable_name(rel, host);
    items.push_back(node_item(host, rel, after.at(rel)));
  }
  for (const std::string& rel : deleted)
    items.push_back({whiteout_entry(rel)});
  return detail::sorted_with_hard_links(std::move(items));
}
}  // namespace

bool overlay_available(const fs::path& scratch, bool userxattr) noexcept {
  try {
    TempDir dir(scratch, "kiln-overlay-probe-");
    const fs::path lower = dir.path() / "lower", upper = dir.path() / "upper",
                   work = dir.path() / "work", merged = dir.path() / "merged";
    for (const fs::path& p : {lower, upper, work, merged}) {
      if (::mkdir(p.c_str(), 0700) != 0)
        return false;
    }
    open_or_throw(lower / "f", O_WRONLY | O_CREAT | O_EXCL, 0600);  // closed at once
    const bool use_userxattr = userxattr || !in_initial_user_ns_as_root();
    const std::string options = overlay_mount_options({lower}, upper, work, use_userxattr);
    if (::mount("overlay", merged.c_str(), "overlay", MS_NOSUID | MS_NODEV, options.c_str()) != 0)
      return false;
    // A mount that cannot create whiteouts (no mknod of 0/0 here, no xattrs on upper) fails the
    // first build step that deletes a file, so it does not count as available.
    const bool deleted = ::unlink((merged / "f").c_str()) == 0;
    if (::umount2(merged.c_str(), 0) != 0 && ::umount2(merged.c_str(), MNT_DETACH) != 0) {
      // Removing the tree would descend into the still-mounted overlay: leave it behind.
      dir.release();
      return false;
    }
    // overlayfs leaves WORK/work with mode 0: without this an unprivileged caller could not
    // remove the probe directory.
    ::chmod((work / "work").c_str(), 0700);
    if (!deleted)
      return false;
    struct stat st {};
    if (::lstat((upper / "f").c_str(), &st) != 0)
      return false;
    const Xattrs x = read_xattrs(upper / "f", true);
    return is_whiteout(st, &x);
  } catch (...) {
    return false;
  }
}

}  // namespace kiln::snapshotter
