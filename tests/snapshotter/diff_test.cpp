#include "kiln/snapshotter/diff.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/io.hpp"
#include "kiln/snapshotter/copy_tree.hpp"
#include "kiln/snapshotter/layer_applier.hpp"
#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

// Throws with errno's text when a system call failed: the tests then fail naming the step.
void sys(int rc, const std::string& what) {
  if (rc != 0)
    throw Error(what + ": " + std::strerror(errno));
}

void write_file(const fs::path& path, const std::string& content, mode_t mode = 0644) {
  UniqueFd fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  write_all(fd.get(), content.data(), content.size(), path.string());
  sys(::fchmod(fd.get(), mode), "chmod " + path.string());  // whatever the umask
}

void append_file(const fs::path& path, const std::string& content) {
  UniqueFd fd = open_or_throw(path, O_WRONLY | O_APPEND);
  write_all(fd.get(), content.data(), content.size(), path.string());
}

void make_dir(const fs::path& path, mode_t mode = 0755) {
  sys(::mkdir(path.c_str(), mode), "mkdir " + path.string());
  sys(::chmod(path.c_str(), mode), "chmod " + path.string());
}

void set_xattr(const fs::path& path, const std::string& name, const std::string& value) {
  sys(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0),
      "setxattr " + name + " " + path.string());
}

void write_layer_file(std::vector<LayerEntry> entries, const fs::path& file) {
  UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  FdSink sink(fd.get(), file.string());
  LayerOptions options;
  options.compression.algorithm = Compression::kNone;
  write_layer(std::move(entries), options, sink);
}

// Everything the comparison cares about, one line per path: type, mode, owner, mtime (not for
// symlinks), content / target / device, user.* xattrs, and the other paths sharing the inode.
std::map<std::string, std::string> describe_tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> inodes;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const fs::path host = it->path();
    const std::string rel = host.lexically_relative(root).string();
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0 && errno == ENOENT)
      continue;  // a whiteout an overlay lists but cannot look up: not part of the view
    sys(::lstat(host.c_str(), &st), "lstat " + host.string());
    std::ostringstream d;
    d << std::oct << (st.st_mode & S_IFMT) << " " << (st.st_mode & 07777) << std::dec << " "
      << st.st_uid << ":" << st.st_gid;
    if (S_ISREG(st.st_mode)) {
      d << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec
        << " content=" << read_file(host);
      inodes[{st.st_dev, st.st_ino}].push_back(rel);
    } else if (S_ISLNK(st.st_mode)) {
      d << " -> " << fs::read_symlink(host).string();
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      d << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    } else {
      d << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    }
    char names[4096];
    ssize_t n = ::llistxattr(host.c_str(), names, sizeof names);
    std::vector<std::string> xattrs;
    for (ssize_t i = 0; n > 0 && i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
      std::string name = names + i;
      if (name.rfind("user.", 0) != 0)
        continue;
      char value[1024];
      ssize_t len = ::lgetxattr(host.c_str(), name.c_str(), value, sizeof value);
      xattrs.push_back(name + "=" +
                       std::string(value, static_cast<size_t>(std::max<ssize_t>(len, 0))));
    }
    std::sort(xattrs.begin(), xattrs.end());
    for (const std::string& x : xattrs)
      d << " xattr:" << x;
    out[rel] = d.str();
  }
  for (const auto& [inode, paths] : inodes) {
    if (paths.size() < 2)
      continue;
    for (const std::string& p : paths) {
      out[p] += " links=";
      for (const std::string& other : paths)
        out[p] += other + ";";
    }
  }
  return out;
}

// The differences between two described trees, one message each; empty when they agree.
std::vector<std::string> differences(const std::map<std::string, std::string>& expected,
                                     const std::map<std::string, std::string>& actual) {
  std::vector<std::string> out;
  for (const auto& [path, want] : expected) {
    auto it = actual.find(path);
    if (it == actual.end())
      out.push_back("missing " + path + " (" + want + ")");
    else if (it->second != want)
      out.push_back("differs " + path + ": want " + want + ", got " + it->second);
  }
  for (const auto& [path, got] : actual) {
    if (!expected.count(path))
      out.push_back("unexpected " + path + " (" + got + ")");
  }
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines)
    s += "\n  " + l;
  return s;
}

const LayerEntry* find_entry(const std::vector<LayerEntry>& entries, const std::string& path) {
  for (const LayerEntry& e : entries) {
    if (e.path == path)
      return &e;
  }
  return nullptr;
}

std::set<std::string> paths_of(const std::vector<LayerEntry>& entries) {
  std::set<std::string> paths;
  for (const LayerEntry& e : entries)
    paths.insert(e.path);
  return paths;
}

// The tree every step starts from.
void build_lower(const fs::path& l) {
  make_dir(l);
  write_file(l / "keep", "keep\n");
  write_file(l / "keep2", "keep2\n");
  write_file(l / "modify", "old\n");
  write_file(l / "chmod_me", "c\n");
  write_file(l / "chown_me", "o\n");
  write_file(l / "delete_me", "d\n");
  write_file(l / "touch_me", "t\n");
  make_dir(l / "deldir");
  write_file(l / "deldir/a", "a\n");
  make_dir(l / "deldir/b");
  write_file(l / "deldir/b/c", "c\n");
  sys(::symlink("c", (l / "deldir/b/l").c_str()), "symlink");
  make_dir(l / "dir2file");
  write_file(l / "dir2file/x", "x\n");
  write_file(l / "file2dir", "f\n");
  make_dir(l / "opq", 0750);
  write_file(l / "opq/old1", "1\n");
  write_file(l / "opq/old2", "2\n");
  make_dir(l / "opq/sub");
  write_file(l / "opq/sub/old3", "3\n");
  sys(::symlink("keep", (l / "oldlink").c_str()), "symlink");
  write_file(l / "xattr_file", "x\n");
  set_xattr(l / "xattr_file", "user.orig", "1");
  write_file(l / "hl_a", "shared\n");
  sys(::link((l / "hl_a").c_str(), (l / "hl_b").c_str()), "link");
  make_dir(l / "sub");
  make_dir(l / "sub/deep");
  write_file(l / "sub/deep/file", "deep\n");
  write_file(l / "sub/other", "other\n");
  make_dir(l / "etc");
  write_file(l / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  make_dir(l / "untouched");
  write_file(l / "untouched/f", "u\n");
  // Fixed, distinct times, so an mtime the diff loses shows up in the comparison.
  int64_t t = 1600000000;
  for (auto it = fs::recursive_directory_iterator(l); it != fs::recursive_directory_iterator();
       ++it) {
    timespec times[2] = {{t, 0}, {t, 123456789}};
    sys(::utimensat(AT_FDCWD, it->path().c_str(), times, AT_SYMLINK_NOFOLLOW), "utimensat");
    t += 10;
  }
}

// What the step does, through the merged mount or directly in the tree.
void make_changes(const fs::path& r) {
  write_file(r / "new_file", "new\n", 0640);
  set_xattr(r / "new_file", "user.added", "yes");
  write_file(r / "sub/deep/new", "n\n");
  append_file(r / "modify", "more\n");
  append_file(r / "etc/passwd", "user:x:1000:1000::/home/user:/bin/sh\n");  // "etc" unchanged
  sys(::chmod((r / "chmod_me").c_str(), 0600), "chmod");
  sys(::chmod((r / "sub").c_str(), 0700), "chmod dir");
  sys(::lchown((r / "chown_me").c_str(), 1234, 5678), "lchown");
  timespec times[2] = {{1700000000, 0}, {1700000000, 5}};
  sys(::utimensat(AT_FDCWD, (r / "touch_me").c_str(), times, 0), "utimensat");
  sys(::unlink((r / "delete_me").c_str()), "unlink");
  fs::remove_all(r / "deldir");
  fs::remove_all(r / "dir2file");
  write_file(r / "dir2file", "now a file\n");
  sys(::unlink((r / "file2dir").c_str()), "unlink");
  make_dir(r / "file2dir", 0711);
  write_file(r / "file2dir/inner", "i\n");
  fs::remove_all(r / "opq");  // and recreated with other content: an opaque directory
  make_dir(r / "opq", 0700);
  write_file(r / "opq/new1", "n1\n");
  sys(::symlink("modify", (r / "link").c_str()), "symlink");
  sys(::unlink((r / "oldlink").c_str()), "unlink");
  sys(::symlink("new_file", (r / "oldlink").c_str()), "symlink");
  sys(::link((r / "new_file").c_str(), (r / "new_hard").c_str()), "link new");
  sys(::link((r / "keep2").c_str(), (r / "keep2_link").c_str()), "link lower");
  set_xattr(r / "xattr_file", "user.test", "v");
  append_file(r / "hl_a", "changed\n");
  sys(::mkfifo((r / "fifo").c_str(), 0644), "mkfifo");
  sys(::mknod((r / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), "mknod");
  make_dir(r / "emptydir");
  make_dir(r / "newdir");
  make_dir(r / "newdir/sub");
  sys(::symlink("../../keep", (r / "newdir/sub/l").c_str()), "symlink");
  // A file within the tree, not a lower directory (that would be EXDEV on overlay).
  sys(::rename((r / "sub/deep/file").c_str(), (r / "moved").c_str()), "rename");
}

// Writes `entries` as a layer and applies it onto a fresh copy of `original`; returns that copy.
fs::path apply_onto_copy(std::vector<LayerEntry> entries, const fs::path& original,
                         const fs::path& scratch) {
  const fs::path layer = scratch / "diff.tar";
  write_layer_file(std::move(entries), layer);
  const fs::path applied = scratch / "applied";
  make_dir(applied);
  copy_tree(original, applied);
  apply_layer(layer, applied);
  return applied;
}

void expect_no_overlay_xattrs(const std::vector<LayerEntry>& entries) {
  for (const LayerEntry& e : entries) {
    for (const auto& x : e.xattrs) {
      EXPECT_NE(x.first.rfind("trusted.overlay.", 0), 0u) << e.path << " " << x.first;
      EXPECT_NE(x.first.rfind("user.overlay.", 0), 0u) << e.path << " " << x.first;
    }
  }
}

// Mounts an overlay for the life of the object (or until unmount()).
class OverlayMount {
 public:
  OverlayMount(const fs::path& lower, const fs::path& upper, const fs::path& work,
               const fs::path& merged, bool userxattr = false)
      : merged_(merged) {
    const std::string options = overlay_mount_options({lower}, upper, work, userxattr);
    sys(::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()),
        "mount overlay " + options);
    mounted_ = true;
  }
  ~OverlayMount() {
    if (mounted_)
      ::umount2(merged_.c_str(), MNT_DETACH);
  }
  OverlayMount(const OverlayMount&) = delete;
  OverlayMount& operator=(const OverlayMount&) = delete;

  void unmount() {
    sys(::umount2(merged_.c_str(), 0), "umount " + merged_.string());
    mounted_ = false;
  }

 private:
  fs::path merged_;
  bool mounted_ = false;
};

bool overlay_here() {
  static const bool available = overlay_available(fs::temp_directory_path(), false);
  return available;
}

// A lower tree and empty upper/work/merged directories in a TempDir.
class OverlayDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!overlay_here())
      GTEST_SKIP() << "overlayfs cannot be mounted here";
    build_lower(lower_);
    for (const fs::path& p : {upper_, work_, merged_})
      make_dir(p);
  }

  // Mounts, runs `change` in the merged view, records the view, unmounts; returns the view.
  template <typename Fn>
  std::map<std::string, std::string> run_step(Fn change, bool userxattr = false) {
    OverlayMount mount(lower_, upper_, work_, merged_, userxattr);
    change(merged_);
    auto view = describe_tree(merged_);
    mount.unmount();
    return view;
  }

  TempDir dir_;
  fs::path lower_ = dir_.path() / "lower";
  fs::path upper_ = dir_.path() / "upper";
  fs::path work_ = dir_.path() / "work";
  fs::path merged_ = dir_.path() / "merged";
};

TEST_F(OverlayDiffTest, LayerReproducesTheMergedView) {
  const auto merged = run_step(make_changes);
  const auto entries = diff_overlay_upper(upper_, lower_);
  const fs::path applied = apply_onto_copy(entries, lower_, dir_.path());
  EXPECT_EQ(differences(merged, describe_tree(applied)), std::vector<std::string>{})
      << joined(differences(merged, describe_tree(applied)));
}

TEST_F(OverlayDiffTest, WhiteoutsMarkersAndLinks) {
  run_step(make_changes);
  const auto entries = diff_overlay_upper(upper_, lower_);
  const auto paths = paths_of(entries);

  for (const char* whiteout : {".wh.delete_me", ".wh.deldir"}) {
    const LayerEntry* e = find_entry(entries, whiteout);
    ASSERT_NE(e, nullptr) << whiteout;
    EXPECT_EQ(e->mode, static_cast<mode_t>(S_IFREG));
    EXPECT_TRUE(e->source.empty() && !e->content);
  }
  // One whiteout for the deleted tree, nothing below it.
  for (const std::string& p : paths)
    EXPECT_NE(p.rfind("deldir/", 0), 0u) << p;
  EXPECT_TRUE(paths.count("opq/.wh..wh..opq"));
  EXPECT_TRUE(paths.count("file2dir/.wh..wh..opq"));  // a dir created where a file was
  EXPECT_FALSE(paths.count("opq/.wh.old1"));          // the opaque dir hides it already
  EXPECT_FALSE(paths.count("newdir/.wh..wh..opq"));   // new, nothing to hide
  ASSERT_NE(find_entry(entries, "dir2file"), nullptr);
  EXPECT_TRUE(S_ISREG(find_entry(entries, "dir2file")->mode));
  EXPECT_FALSE(paths.count("keep"));
  EXPECT_FALSE(paths.count("untouched"));
  EXPECT_FALSE(paths.count("hl_b"));  // the lower link is untouched; hl_a was copied up alone

  const LayerEntry* hard = find_entry(entries, "new_hard");
  ASSERT_NE(hard, nullptr);
  EXPECT_TRUE(hard->hardlink);
  EXPECT_EQ(hard->link_target, "new_file");
  const LayerEntry* lower_link = find_entry(entries, "keep2_link");
  ASSERT_NE(lower_link, nullptr);
  EXPECT_TRUE(lower_link->hardlink);
  EXPECT_EQ(lower_link->link_target, "keep2");
  EXPECT_EQ(find_entry(entries, "oldlink")->link_target, "new_file");

  const LayerEntry* x = find_entry(entries, "xattr_file");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->xattrs, (std::vector<std::pair<std::string, std::string>>{{"user.orig", "1"},
                                                                         {"user.test", "v"}}));
  expect_no_overlay_xattrs(entries);
}

TEST_F(OverlayDiffTest, UnchangedMountGivesAnEmptyDiff) {
  run_step([](const fs::path& m) {
    (void)read_file(m / "keep");
    (void)describe_tree(m);
  });
  EXPECT_EQ(diff_overlay_upper(upper_, lower_).size(), 0u);
}

TEST_F(OverlayDiffTest, ExcludedEmptyMountpointsAreLeftOut) {
  run_step([](const fs::path& m) {
    write_file(m / "etc/hosts", "");                  // excluded, empty: a bind mountpoint
    write_file(m / "etc/resolv.conf", "nameserver");  // excluded but written: kept
    write_file(m / "etc/hostname", "");               // empty, not excluded: kept
    make_dir(m / "proc");                             // excluded, empty
    make_dir(m / "dev");                              // excluded, not empty: kept
    write_file(m / "dev/null_file", "x");
    make_dir(m / "run");
    make_dir(m / "run/secrets");
    make_dir(m / "mnt");
    make_dir(m / "mnt/a");
    write_file(m / "run/secrets/token", "");  // all three excluded: a secret's mountpoint
    write_file(m / "mnt/a/stub", "");         // mnt/a excluded and holding only a stub,
    write_file(m / "mnt/kept", "x");          // but mnt holds a real file
  });
  const std::set<std::string> exclude = {
      "/etc/hosts",  "etc/resolv.conf",   "./proc/", "dev",   "run",
      "run/secrets", "run/secrets/token", "mnt",     "mnt/a", "mnt/a/stub"};
  const auto paths = paths_of(diff_overlay_upper(upper_, lower_, exclude));
  EXPECT_EQ(paths, (std::set<std::string>{"etc", "etc/hostname", "etc/resolv.conf", "dev",
                                          "dev/null_file", "mnt", "mnt/kept"}));
  const auto all = paths_of(diff_overlay_upper(upper_, lower_));
  EXPECT_TRUE(all.count("etc/hosts") && all.count("proc"));
}

TEST_F(OverlayDiffTest, UserxattrMountRoundTrips) {
  const auto merged = run_step(make_changes, true);
  // The mount really used the user.* namespace for its markers.
  char value[8];
  ASSERT_EQ(::lgetxattr((upper_ / "opq").c_str(), "user.overlay.opaque", value, sizeof value), 1);
  const auto entries = diff_overlay_upper(upper_, lower_);
  EXPECT_TRUE(paths_of(entries).count("opq/.wh..wh..opq"));
  EXPECT_TRUE(paths_of(entries).count(".wh.delete_me"));
  expect_no_overlay_xattrs(entries);
  const fs::path applied = apply_onto_copy(entries, lower_, dir_.path());
  EXPECT_EQ(differences(merged, describe_tree(applied)), std::vector<std::string>{})
      << joined(differences(merged, describe_tree(applied)));
}

TEST_F(OverlayDiffTest, RenamingALowerDirectoryIsExdev) {
  OverlayMount mount(lower_, upper_, work_, merged_);
  // redirect_dir=nofollow: no redirect xattrs in upper; mv(1) copies instead.
  EXPECT_EQ(::rename((merged_ / "sub").c_str(), (merged_ / "sub2").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
}

// An upper dir written by hand in overlayfs's format, mounted to check that the kernel reads it
// as the diff does.
TEST_F(OverlayDiffTest, XattrWhiteoutsAndOpaqueValues) {
  write_file(lower_ / "gone", "g\n");
  make_dir(lower_ / "xdir");
  write_file(lower_ / "xdir/gone2", "g2\n");
  write_file(lower_ / "xdir/stays", "s\n");

  write_file(upper_ / "gone", "");  // the newer whiteout form
  set_xattr(upper_ / "gone", "trusted.overlay.whiteout", "");
  set_xattr(upper_, "trusted.overlay.opaque", "x");  // "has xattr whiteouts", not opaque
  make_dir(upper_ / "xdir");
  set_xattr(upper_ / "xdir", "trusted.overlay.opaque", "x");
  write_file(upper_ / "xdir/gone2", "");
  set_xattr(upper_ / "xdir/gone2", "trusted.overlay.whiteout", "");
  make_dir(upper_ / "opq", 0750);
  set_xattr(upper_ / "opq", "trusted.overlay.opaque", "y");
  write_file(upper_ / "opq/mine", "m\n");
  make_dir(upper_ / "fresh");  // not in lower: the whiteout inside hides nothing
  sys(::mknod((upper_ / "fresh/w").c_str(), S_IFCHR, makedev(0, 0)), "mknod whiteout");
  write_file(upper_ / "emptyfile", "");  // empty but no whiteout xattr: a real file

  const auto entries = diff_overlay_upper(upper_, lower_);
  EXPECT_EQ(paths_of(entries),
            (std::set<std::string>{".wh.gone", "xdir", "xdir/.wh.gone2", "opq", "opq/.wh..wh..opq",
                                   "opq/mine", "fresh", "emptyfile"}));
  expect_no_overlay_xattrs(entries);
  EXPECT_TRUE(paths_of(diff_overlay_upper(upper_, "")).count("fresh/.wh.w"));

  const auto merged = run_step([](const fs::path&) {});
  const fs::path applied = apply_onto_copy(entries, lower_, dir_.path());
  EXPECT_EQ(differences(merged, describe_tree(applied)), std::vector<std::string>{})
      << joined(differences(merged, describe_tree(applied)));
}

TEST_F(OverlayDiffTest, RedirectsAndWhiteoutNamesAreErrors) {
  make_dir(upper_ / "moved");
  set_xattr(upper_ / "moved", "trusted.overlay.redirect", "/sub");
  EXPECT_THROW(diff_overlay_upper(upper_, lower_), Error);
  fs::remove_all(upper_ / "moved");
  write_file(upper_ / ".wh.sneaky", "x");
  EXPECT_THROW(diff_overlay_upper(upper_, lower_), Error);
}

TEST(DiffMountOptions, EscapesSeparators) {
  EXPECT_EQ(overlay_mount_options({"/l,1", "/l:2"}, "/u\\p", "/w", false),
            "lowerdir=/l\\,1:/l\\:2,upperdir=/u\\\\p,workdir=/w,"
            "redirect_dir=nofollow,metacopy=off");
  EXPECT_EQ(overlay_mount_options({"/l"}, "/u", "/w", true),
            "lowerdir=/l,upperdir=/u,workdir=/w,userxattr,redirect_dir=nofollow,metacopy=off");
  EXPECT_THROW(overlay_mount_options({}, "/u", "/w", false), Error);
  EXPECT_THROW(overlay_mount_options({"/l"}, "", "/w", false), Error);
  EXPECT_THROW(overlay_mount_options({"/l"}, "/u", "/" + std::string(5000, 'w'), false), Error);
}

TEST(DiffMountOptions, EscapedPathsMount) {
  if (!overlay_here())
    GTEST_SKIP() << "overlayfs cannot be mounted here";
  TempDir dir;
  const fs::path lower = dir.path() / "lo,w:er\\1", upper = dir.path() / "up,per",
                 work = dir.path() / "wo:rk", merged = dir.path() / "merged";
  for (const fs::path& p : {lower, upper, work, merged})
    make_dir(p);
  write_file(lower / "f", "lower\n");
  OverlayMount mount(lower, upper, work, merged);
  EXPECT_EQ(read_file(merged / "f"), "lower\n");
  write_file(merged / "g", "upper\n");
  mount.unmount();
  EXPECT_EQ(read_file(upper / "g"), "upper\n");
}

TEST(DiffOverlayAvailable, ProbesAndCleansUp) {
  TempDir scratch;
  const bool available = overlay_available(scratch.path(), false);
  const bool with_userxattr = overlay_available(scratch.path(), true);
  if (::geteuid() == 0 && available) {
    EXPECT_TRUE(with_userxattr);  // kernels with userxattr (5.11+) accept it from root too
  }
  EXPECT_TRUE(fs::is_empty(scratch.path()));  // the probe removed its directories
  EXPECT_FALSE(overlay_available(scratch.path() / "missing", false));
}

// --- copy backend ---

class CopyDiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    build_lower(original_);
    make_dir(root_);
    copy_tree(original_, root_);
  }

  TempDir dir_;
  fs::path original_ = dir_.path() / "original";
  fs::path root_ = dir_.path() / "root";
};

TEST_F(CopyDiffTest, LayerReproducesTheTree) {
  const TreeIndex before = TreeIndex::scan(root_);
  make_changes(root_);
  const auto expected = describe_tree(root_);
  const auto entries = diff_tree(before, root_);
  const fs::path applied = apply_onto_copy(entries, original_, dir_.path());
  EXPECT_EQ(differences(expected, describe_tree(applied)), std::vector<std::string>{})
      << joined(differences(expected, describe_tree(applied)));
}

TEST_F(CopyDiffTest, WhiteoutsParentsAndLinks) {
  const TreeIndex before = TreeIndex::scan(root_);
  make_changes(root_);
  const auto entries = diff_tree(before, root_);
  const auto paths = paths_of(entries);

  for (const char* whiteout :
       {".wh.delete_me", ".wh.deldir", "opq/.wh.old1", "opq/.wh.sub", "sub/deep/.wh.file"}) {
    const LayerEntry* e = find_entry(entries, whiteout);
    ASSERT_NE(e, nullptr) << whiteout;
    EXPECT_EQ(e->mode, static_cast<mode_t>(S_IFREG));
  }
  for (const std::string& p : paths) {
    EXPECT_NE(p.rfind("deldir/", 0), 0u) << p;
    EXPECT_NE(p.rfind("dir2file/", 0), 0u) << p;  // the directory became a file
    EXPECT_NE(p.rfind("opq/sub/", 0), 0u) << p;
  }
  EXPECT_TRUE(S_ISREG(find_entry(entries, "dir2file")->mode));
  EXPECT_TRUE(S_ISDIR(find_entry(entries, "file2dir")->mode));
  // Parents of changes, with their current metadata, even when unchanged themselves.
  ASSERT_NE(find_entry(entries, "etc"), nullptr);
  EXPECT_EQ(find_entry(entries, "etc")->mtime_sec, before.find("etc")->mtime_ns / 1000000000);
  ASSERT_NE(find_entry(entries, "sub/deep"), nullptr);
  EXPECT_EQ(find_entry(entries, "sub")->mode, static_cast<mode_t>(S_IFDIR | 0700));
  ASSERT_NE(find_entry(entries, "newdir/sub/l"), nullptr);
  EXPECT_FALSE(paths.count("keep"));
  EXPECT_FALSE(paths.count("untouched"));
  EXPECT_FALSE(paths.count("untouched/f"));
  // The in-place append changed the inode hl_a and hl_b share: both go, as one file.
  const LayerEntry* hl_b = find_entry(entries, "hl_b");
  ASSERT_NE(hl_b, nullptr);
  EXPECT_TRUE(hl_b->hardlink);
  EXPECT_EQ(hl_b->link_target, "hl_a");
  EXPECT_EQ(find_entry(entries, "new_hard")->link_target, "new_file");
  EXPECT_TRUE(find_entry(entries, "keep2_link")->hardlink);
  EXPECT_FALSE(find_entry(entries, "keep2")->hardlink);
}

TEST_F(CopyDiffTest, UnchangedTreeGivesAnEmptyDiff) {
  const TreeIndex before = TreeIndex::scan(root_);
  (void)read_file(root_ / "keep");
  (void)describe_tree(root_);
  EXPECT_EQ(diff_tree(before, root_).size(), 0u);
}

TEST_F(CopyDiffTest, ExcludedEmptyMountpointsAreLeftOut) {
  write_file(root_ / "etc/stale_mountpoint", "");  // created by a sandbox before the scan
  const TreeIndex before = TreeIndex::scan(root_);
  write_file(root_ / "etc/hosts", "");
  write_file(root_ / "etc/resolv.conf", "nameserver");
  make_dir(root_ / "proc");
  make_dir(root_ / "run");
  make_dir(root_ / "run/secrets");
  make_dir(root_ / "mnt");
  make_dir(root_ / "mnt/a");
  write_file(root_ / "run/secrets/token", "");  // nested mountpoints only
  write_file(root_ / "mnt/a/stub", "");
  write_file(root_ / "mnt/kept", "x");
  sys(::unlink((root_ / "etc/stale_mountpoint").c_str()), "unlink");
  sys(::unlink((root_ / "etc/passwd").c_str()), "unlink");  // excluded but not empty before
  const std::set<std::string> exclude = {"/etc/hosts",  "etc/resolv.conf",
                                         "proc",        "etc/stale_mountpoint",
                                         "etc/passwd",  "run",
                                         "run/secrets", "run/secrets/token",
                                         "mnt",         "mnt/a",
                                         "mnt/a/stub"};
  EXPECT_EQ(paths_of(diff_tree(before, root_, exclude)),
            (std::set<std::string>{"etc", "etc/resolv.conf", "etc/.wh.passwd", "mnt", "mnt/kept"}));
  EXPECT_TRUE(paths_of(diff_tree(before, root_)).count("etc/.wh.stale_mountpoint"));
}

TEST_F(CopyDiffTest, SameSizeRewriteRightAfterTheScanIsSeen) {
  const TreeIndex before = TreeIndex::scan(root_);
  // Same size, same inode, mtime set back: only the ctime can tell.
  UniqueFd fd = open_or_throw(root_ / "keep", O_WRONLY);
  write_all(fd.get(), "KEEP\n", 5, "keep");
  const TreeIndex::Node* old = before.find("keep");
  ASSERT_NE(old, nullptr);
  timespec times[2] = {{0, UTIME_OMIT},
                       {old->mtime_ns / 1000000000, static_cast<long>(old->mtime_ns % 1000000000)}};
  sys(::futimens(fd.get(), times), "futimens");
  EXPECT_EQ(paths_of(diff_tree(before, root_)), (std::set<std::string>{"keep"}));
}

TEST_F(CopyDiffTest, WhiteoutNamesAreErrors) {
  const TreeIndex before = TreeIndex::scan(root_);
  write_file(root_ / ".wh.keep", "");
  EXPECT_THROW(diff_tree(before, root_), Error);
}

TEST(DiffTreeIndex, RecordsEveryEntryWithoutReadingContent) {
  TempDir dir;
  build_lower(dir.path() / "t");
  const TreeIndex index = TreeIndex::scan(dir.path() / "t");
  size_t count = 0;
  for (auto it = fs::recursive_directory_iterator(dir.path() / "t");
       it != fs::recursive_directory_iterator(); ++it)
    ++count;
  EXPECT_EQ(index.size(), count);
  ASSERT_NE(index.find("oldlink"), nullptr);
  EXPECT_EQ(index.find("oldlink")->link_target, "keep");
  EXPECT_NE(index.find("xattr_file")->xattr_digest, 0u);
  EXPECT_EQ(index.find("keep")->xattr_digest, 0u);
  EXPECT_EQ(index.find("hl_a")->ino, index.find("hl_b")->ino);
  EXPECT_EQ(index.find("missing"), nullptr);
  EXPECT_THROW(TreeIndex::scan(dir.path() / "missing"), Error);
}

}  // namespace
}  // namespace kiln::snapshotter
