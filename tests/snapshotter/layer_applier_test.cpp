#include "kiln/snapshotter/layer_applier.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/layer_blob.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

enum class Filter { kNone, kGzip, kZstd };

// One tar entry as the tests want it written, hostile names included: libarchive's writer
// stores names and link targets verbatim.
struct TarEntry {
  std::string name;
  mode_t type = AE_IFREG;
  mode_t perm = 0644;
  std::string data;
  std::string symlink;
  std::string hardlink;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = 1700000000;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class Layer {
 public:
  Layer& file(const std::string& name, const std::string& data = "", mode_t perm = 0644) {
    TarEntry e;
    e.name = name;
    e.data = data;
    e.perm = perm;
    entries_.push_back(e);
    return *this;
  }
  Layer& dir(const std::string& name, mode_t perm = 0755) {
    TarEntry e;
    e.name = name;
    e.type = AE_IFDIR;
    e.perm = perm;
    entries_.push_back(e);
    return *this;
  }
  Layer& symlink(const std::string& name, const std::string& target) {
    TarEntry e;
    e.name = name;
    e.type = AE_IFLNK;
    e.perm = 0777;
    e.symlink = target;
    entries_.push_back(e);
    return *this;
  }
  Layer& hardlink(const std::string& name, const std::string& target) {
    TarEntry e;
    e.name = name;
    e.hardlink = target;
    entries_.push_back(e);
    return *this;
  }
  Layer& node(const std::string& name, mode_t type, unsigned major = 0, unsigned minor = 0) {
    TarEntry e;
    e.name = name;
    e.type = type;
    e.perm = 0640;
    e.rdev_major = major;
    e.rdev_minor = minor;
    entries_.push_back(e);
    return *this;
  }
  TarEntry& last() { return entries_.back(); }

  void write(const fs::path& path, Filter filter = Filter::kNone) const {
    // Write names as real layer writers do (UTF-8 in PAX records), which the "C" locale of the
    // test process would refuse for non-ASCII names.
    locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
    ASSERT_TRUE(utf8);
    locale_t previous = ::uselocale(utf8);
    write_archive(path, filter);
    ::uselocale(previous);
    ::freelocale(utf8);
  }

 private:
  void write_archive(const fs::path& path, Filter filter) const {
    archive* a = archive_write_new();
    ASSERT_NE(a, nullptr);
    ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (filter == Filter::kGzip) {
      ASSERT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    }
    if (filter == Filter::kZstd) {
      ASSERT_EQ(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    }
    ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
    for (const TarEntry& t : entries_) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, t.name.c_str());
      archive_entry_set_perm(e, t.perm);
      archive_entry_set_uid(e, t.uid);
      archive_entry_set_gid(e, t.gid);
      archive_entry_set_mtime(e, t.mtime, 0);
      if (!t.hardlink.empty()) {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.hardlink.c_str());
        archive_entry_set_size(e, 0);
      } else {
        archive_entry_set_filetype(e, t.type);
        if (t.type == AE_IFLNK)
          archive_entry_set_symlink(e, t.symlink.c_str());
        if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
          archive_entry_set_rdevmajor(e, t.rdev_major);
          archive_entry_set_rdevminor(e, t.rdev_minor);
        }
        archive_entry_set_size(e, t.type == AE_IFREG ? static_cast<la_int64_t>(t.data.size()) : 0);
      }
      for (const auto& [key, value] : t.xattrs) {
        archive_entry_xattr_add_entry(e, key.c_str(), value.data(), value.size());
      }
      ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK)
          << t.name << ": " << archive_error_string(a);
      if (!t.data.empty()) {
        ASSERT_EQ(archive_write_data(a, t.data.data(), t.data.size()),
                  static_cast<la_ssize_t>(t.data.size()));
      }
      archive_entry_free(e);
    }
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
  }

  std::vector<TarEntry> entries_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

struct stat lstat_or_die(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

bool exists_nofollow(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Everything observable about a tree, without following symlinks: the before/after comparison
// that proves an apply left a directory alone.
std::string describe(const fs::path& dir) {
  std::map<std::string, std::string> lines;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    const fs::path p = it->path();
    struct stat st = lstat_or_die(p);
    std::ostringstream line;
    line << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid << " "
         << st.st_nlink << " " << st.st_mtim.tv_sec;
    if (S_ISREG(st.st_mode))
      line << " " << read_file(p);
    if (S_ISLNK(st.st_mode))
      line << " -> " << fs::read_symlink(p).string();
    lines[fs::relative(p, dir).string()] = line.str();
  }
  std::string out;
  for (const auto& [k, v] : lines)
    out += k + " " + v + "\n";
  return out;
}

class LayerApply : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    layer_ = tmp_.path() / "layer.tar";
    fs::create_directories(root_);
    fs::create_directories(outside_ / "dir");
    write_file(outside_ / "sentinel", "keep");
    write_file(outside_ / "dir" / "x", "keep too");
    before_ = describe(outside_);
  }

  // The promise of every hostile test: the sibling of root is exactly as it was, and nothing
  // new appeared next to root.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(describe(outside_), before_);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp_.path())) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"layer.tar", "outside", "root"}));
  }

  ApplyStats Apply(const Layer& layer, ApplyOptions options = {}) {
    layer.write(layer_);
    options.warn = [this](const std::string& w) { warnings_.push_back(w); };
    return apply_layer(layer_, root_, options);
  }

  // Applies and expects a kiln::Error whose message names the layer and contains `needle`.
  std::string ApplyFails(const Layer& layer, const std::string& needle) {
    try {
      Apply(layer);
    } catch (const Error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(layer_.string()), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      return what;
    }
    ADD_FAILURE() << "apply did not fail";
    return {};
  }

  TempDir tmp_;
  fs::path root_;
  fs::path outside_;
  fs::path layer_;
  std::string before_;
  std::vector<std::string> warnings_;
};

TEST_F(LayerApply, CreatesTreeWithModesOwnersTimesAndXattrs) {
  Layer l;
  l.dir("bin/", 0755);
  l.last().mtime = 1600000000;
  l.file("bin/su", "#!/bin/sh\n", 04755);
  l.last().uid = 1234;
  l.last().gid = 5678;
  l.last().mtime = 1500000000;
  l.last().xattrs = {{"user.kiln", "yes"}, {"trusted.kiln", "t"}};
  l.dir("shared/", 02775);
  l.last().gid = 50;
  l.dir("tmp/", 01777);
  l.symlink("bin/sh", "su");
  l.last().uid = 7;
  l.last().xattrs = {{"user.onlink", "x"}};  // user.* cannot go on a symlink: a warning
  l.node("run/fifo", AE_IFIFO);
  l.dir("ro/", 0555);
  l.file("ro/inside", "x");                // written after its read-only directory
  l.file("/usr/lib/\xc3\xbc.so", "utf8");  // absolute and non-ASCII: re-rooted, kept as bytes
  locale_t locale_before = ::uselocale(locale_t{});
  ApplyStats stats = Apply(l);
  EXPECT_EQ(::uselocale(locale_t{}), locale_before);  // the thread's locale is given back

  EXPECT_EQ(stats.entries, 9u);
  EXPECT_EQ(stats.bytes, 10u + 1u + 4u);
  EXPECT_EQ(stats.whiteouts, 0u);

  struct stat su = lstat_or_die(root_ / "bin/su");
  EXPECT_EQ(su.st_mode, S_IFREG | 04755);
  EXPECT_EQ(su.st_uid, 1234u);
  EXPECT_EQ(su.st_gid, 5678u);
  EXPECT_EQ(su.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(read_file(root_ / "bin/su"), "#!/bin/sh\n");
  char value[16] = {};
  EXPECT_EQ(::getxattr((root_ / "bin/su").c_str(), "user.kiln", value, sizeof value), 3);
  EXPECT_STREQ(value, "yes");
  EXPECT_EQ(::getxattr((root_ / "bin/su").c_str(), "trusted.kiln", value, sizeof value), 1);

  // Directory mtimes are set after the children went in.
  EXPECT_EQ(lstat_or_die(root_ / "bin").st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(lstat_or_die(root_ / "shared").st_mode, S_IFDIR | 02775);
  EXPECT_EQ(lstat_or_die(root_ / "shared").st_gid, 50u);
  EXPECT_EQ(lstat_or_die(root_ / "tmp").st_mode, S_IFDIR | 01777);
  EXPECT_EQ(lstat_or_die(root_ / "ro").st_mode, S_IFDIR | 0555);
  EXPECT_EQ(read_file(root_ / "ro/inside"), "x");

  struct stat sh = lstat_or_die(root_ / "bin/sh");
  EXPECT_TRUE(S_ISLNK(sh.st_mode));
  EXPECT_EQ(sh.st_uid, 7u);
  EXPECT_EQ(sh.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(fs::read_symlink(root_ / "bin/sh"), "su");
  ASSERT_EQ(warnings_.size(), 1u) << ::testing::PrintToString(warnings_);
  EXPECT_NE(warnings_[0].find("user.onlink"), std::string::npos) << warnings_[0];
  EXPECT_NE(warnings_[0].find("bin/sh"), std::string::npos) << warnings_[0];

  struct stat fifo = lstat_or_die(root_ / "run/fifo");
  EXPECT_EQ(fifo.st_mode, S_IFIFO | 0640);
  EXPECT_EQ(lstat_or_die(root_ / "run").st_mode, S_IFDIR | 0755);  // implied parent
  EXPECT_EQ(read_file(root_ / "usr/lib/\xc3\xbc.so"), "utf8");
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, WithoutOwnershipFilesBelongToTheCaller) {
  Layer l;
  l.file("f", "x");
  l.last().uid = 4242;
  ApplyOptions options;
  options.preserve_ownership = false;
  Apply(l, options);
  EXPECT_EQ(lstat_or_die(root_ / "f").st_uid, ::geteuid());
}

TEST_F(LayerApply, HardLinksShareTheInode) {
  fs::create_directories(root_ / "lower");
  write_file(root_ / "lower/base", "lower");
  Layer l;
  l.file("a/one", "payload", 0600);
  l.hardlink("a/two", "a/one");
  l.hardlink("b/three", "/a/one");    // absolute target: re-rooted
  l.hardlink("lower/base", "a/one");  // replaces a lower file by unlinking, not truncating
  Apply(l);
  struct stat one = lstat_or_die(root_ / "a/one");
  EXPECT_EQ(one.st_nlink, 4u);
  EXPECT_EQ(lstat_or_die(root_ / "a/two").st_ino, one.st_ino);
  EXPECT_EQ(lstat_or_die(root_ / "b/three").st_ino, one.st_ino);
  EXPECT_EQ(lstat_or_die(root_ / "lower/base").st_ino, one.st_ino);
  EXPECT_EQ(read_file(root_ / "b/three"), "payload");
}

TEST_F(LayerApply, ReplacingAFileNeverWritesThroughItsOtherHardLinks) {
  Layer first;
  first.file("a", "original");
  first.hardlink("b", "a");
  Apply(first);
  Layer second;
  second.file("a", "new");
  Apply(second);
  EXPECT_EQ(read_file(root_ / "a"), "new");
  EXPECT_EQ(read_file(root_ / "b"), "original");
}

TEST_F(LayerApply, ReadsGzipZstdAndUncompressed) {
  for (Filter filter : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    Layer l;
    l.dir("d/");
    l.file("d/f", std::string(100000, 'z'));
    l.write(layer_, filter);
    ApplyStats stats = apply_layer(layer_, root_);
    EXPECT_EQ(stats.entries, 2u);
    EXPECT_EQ(stats.bytes, 100000u);
    EXPECT_EQ(fs::file_size(root_ / "d/f"), 100000u);
  }
}

TEST_F(LayerApply, ReadsFromAnOpenDescriptorWithoutClosingIt) {
  Layer l;
  l.file("f", "via fd");
  l.write(layer_, Filter::kGzip);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  UniqueFd read_end(pipefd[0]);
  {
    UniqueFd write_end(pipefd[1]);
    std::string bytes = read_file(layer_);
    ASSERT_LT(bytes.size(), 60000u);  // fits the pipe buffer, so no writer thread is needed
    write_all(write_end.get(), bytes.data(), bytes.size(), "pipe");
  }
  apply_layer_fd(read_end.get(), "sha256:feed", root_);
  EXPECT_EQ(read_file(root_ / "f"), "via fd");
  EXPECT_NE(::fcntl(read_end.get(), F_GETFD), -1);
}

TEST_F(LayerApply, TruncatedOrCorruptArchiveNamesTheLayer) {
  Layer l;
  l.file("big", std::string(50000, 'b'));
  l.file("after", "x");
  l.write(layer_);
  fs::resize_file(layer_, 20000);
  try {
    apply_layer(layer_, root_);
    ADD_FAILURE() << "truncated archive applied";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("apply layer " + layer_.string()), std::string::npos) << what;
    EXPECT_NE(what.find("\"big\""), std::string::npos) << what;
  }

  // A damaged header (bad checksum) is ARCHIVE_RETRY to libarchive: still an error here.
  l.write(layer_);
  std::string tar = read_file(layer_);
  size_t header = tar.find(std::string("after\0", 6));
  ASSERT_NE(header, std::string::npos);
  tar[header] = 'A';
  write_file(layer_, tar);
  fs::remove_all(root_);
  fs::create_directories(root_);
  try {
    apply_layer(layer_, root_);
    ADD_FAILURE() << "damaged archive applied";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("apply layer " + layer_.string()), std::string::npos) << what;
    EXPECT_NE(what.find("after entry \"big\""), std::string::npos) << what;
  }
  EXPECT_FALSE(exists_nofollow(root_ / "After"));

  l.write(layer_, Filter::kGzip);
  std::string gz = read_file(layer_);
  write_file(layer_, gz.substr(0, gz.size() / 2));
  EXPECT_THROW(apply_layer(layer_, root_), Error);

  write_file(layer_, "this is not a tar archive at all, not even close...");
  try {
    apply_layer(layer_, root_);
    ADD_FAILURE() << "garbage applied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("apply layer " + layer_.string()), std::string::npos);
  }
  EXPECT_THROW(apply_layer(tmp_.path() / "missing.tar", root_), Error);
}

TEST_F(LayerApply, DotDotNamesAreErrors) {
  for (const char* name : {"../escape", "a/../../escape", "a/b/../../../outside/sentinel"}) {
    Layer l;
    l.file(name, "pwned");
    ApplyFails(l, "\"..\" component");
    ExpectOutsideUntouched();
  }
  EXPECT_FALSE(exists_nofollow(tmp_.path() / "escape"));
}

TEST_F(LayerApply, AbsoluteNamesAreReRooted) {
  Layer l;
  l.file("/escape", "inside");
  l.file((outside_ / "sentinel").string(), "inside too");
  Apply(l);
  EXPECT_EQ(read_file(root_ / "escape"), "inside");
  EXPECT_EQ(read_file(root_ / outside_.relative_path() / "sentinel"), "inside too");
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, SymlinkInLayerPointingOutsideIsResolvedInsideRoot) {
  // The link names the real outside directory; inside root that path does not exist.
  Layer l;
  l.symlink("link", outside_.string());
  l.file("link/sentinel", "pwned");
  ApplyFails(l, "symbolic link");
  ExpectOutsideUntouched();

  // When the path exists under root, writing through the link lands there.
  fs::create_directories(root_ / "sub");
  Layer m;
  m.symlink("abs", "/sub");
  m.file("abs/file", "re-rooted");
  Apply(m);
  EXPECT_EQ(read_file(root_ / "sub/file"), "re-rooted");
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, DotDotSymlinkChainIsClampedAtRoot) {
  Layer l;
  l.symlink("up", "../../..");
  l.symlink("d/deeper", "../../../../outside");
  l.file("up/written", "clamped");
  l.dir("up/newdir/");
  l.file("up/newdir/f", "x");
  Apply(l);
  EXPECT_EQ(read_file(root_ / "written"), "clamped");
  EXPECT_EQ(read_file(root_ / "newdir/f"), "x");
  ExpectOutsideUntouched();

  // A link into a missing directory cannot be written through, not even to create it.
  Layer m;
  m.file("d/deeper/sentinel", "pwned");
  ApplyFails(m, "symbolic link");
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, PreexistingSymlinksUnderRootStayInside) {
  fs::create_symlink("../outside", root_ / "rel");
  fs::create_symlink(outside_, root_ / "abs");
  fs::create_symlink(outside_ / "sentinel", root_ / "file_link");
  fs::create_symlink(outside_ / "dir", root_ / "dir_link");

  Layer l;
  l.file("rel/sentinel", "pwned");
  ApplyFails(l, "symbolic link");
  Layer m;
  m.dir("abs/dir/");
  m.file("abs/dir/x", "pwned");
  ApplyFails(m, "symbolic link");
  ExpectOutsideUntouched();

  // A symlink as the final component is replaced, never written through.
  Layer n;
  n.file("file_link", "replaced");
  n.dir("dir_link/", 0700);
  n.file("dir_link/x", "mine");
  Apply(n);
  EXPECT_EQ(read_file(root_ / "file_link"), "replaced");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(root_ / "dir_link")));
  EXPECT_EQ(read_file(root_ / "dir_link/x"), "mine");

  // Once root/outside exists, "rel" -> "../outside" means root/outside.
  fs::create_directories(root_ / "outside");
  Layer o;
  o.file("rel/sentinel", "inside");
  Apply(o);
  EXPECT_EQ(read_file(root_ / "outside/sentinel"), "inside");
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, HostileHardLinksAreErrors) {
  struct stat passwd_before {};
  ASSERT_EQ(::stat("/etc/passwd", &passwd_before), 0);
  fs::create_symlink(outside_, root_ / "out");
  fs::create_symlink("/etc/passwd", root_ / "passwd_link");

  Layer a;
  a.hardlink("passwd", "/etc/passwd");
  ApplyFails(a, "does not exist under the root");
  Layer b;
  b.hardlink("outfile", "../outside/sentinel");
  ApplyFails(b, "\"..\" component");
  Layer c;
  c.hardlink("outfile", "out/sentinel");
  ApplyFails(c, "does not exist under the root");
  Layer d;
  d.hardlink("viasymlink", "passwd_link");
  ApplyFails(d, "not a regular file");
  Layer e;
  e.symlink("s", "/etc/shadow");
  e.hardlink("viasymlink2", "s");
  ApplyFails(e, "not a regular file");
  Layer f;
  f.dir("d/");
  f.hardlink("todir", "d");
  ApplyFails(f, "not a regular file");

  struct stat passwd_after {};
  ASSERT_EQ(::stat("/etc/passwd", &passwd_after), 0);
  EXPECT_EQ(passwd_after.st_nlink, passwd_before.st_nlink);
  EXPECT_FALSE(exists_nofollow(root_ / "passwd"));
  EXPECT_FALSE(exists_nofollow(root_ / "outfile"));
  ExpectOutsideUntouched();

  // "/etc/passwd" means the image's own file.
  fs::create_directories(root_ / "etc");
  write_file(root_ / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  Layer g;
  g.hardlink("passwd", "/etc/passwd");
  Apply(g);
  EXPECT_EQ(lstat_or_die(root_ / "passwd").st_ino, lstat_or_die(root_ / "etc/passwd").st_ino);
  EXPECT_EQ(passwd_after.st_nlink, passwd_before.st_nlink);
}

TEST_F(LayerApply, HostileWhiteouts) {
  for (const char* name : {"../.wh.outside", "a/../../.wh.sentinel"}) {
    Layer l;
    l.file(name);
    ApplyFails(l, "\"..\" component");
  }
  for (const char* name : {".wh...", "a/.wh..", ".wh."}) {
    Layer l;
    l.file(name);
    ApplyFails(l, "whiteout names no file");
  }
  Layer m;
  m.file(".wh.x/y");
  ApplyFails(m, "used as a directory");

  // Through symlinked directories, whiteouts resolve inside root: here to nothing at all.
  fs::create_symlink(outside_, root_ / "abs");
  fs::create_symlink("../outside", root_ / "rel");
  fs::create_symlink("../../../..", root_ / "up");
  Layer n;
  n.file("abs/.wh.sentinel");
  n.file("rel/.wh.sentinel");
  n.file("rel/.wh.dir");
  n.file("abs/dir/.wh..wh..opq");
  n.file("up/.wh.outside");
  ApplyStats stats = Apply(n);
  EXPECT_EQ(stats.whiteouts, 5u);
  ExpectOutsideUntouched();
  EXPECT_TRUE(exists_nofollow(root_ / "abs"));
  EXPECT_TRUE(exists_nofollow(root_ / "rel"));
  EXPECT_FALSE(exists_nofollow(root_ / "outside"));  // no directory made for a whiteout

  // "up/.wh.abs" is root/abs: the link itself goes, its target stays.
  Layer o;
  o.file("up/.wh.abs");
  Apply(o);
  EXPECT_FALSE(exists_nofollow(root_ / "abs"));
  ExpectOutsideUntouched();
}

TEST_F(LayerApply, DevicesAreSkippedWithAWarningWhenNotAllowed) {
  Layer l;
  l.node("dev/null", AE_IFCHR, 1, 3);
  l.node("dev/sda", AE_IFBLK, 8, 0);
  l.file("dev/ok", "x");
  ApplyOptions options;
  options.allow_devices = false;
  ApplyStats stats = Apply(l, options);
  EXPECT_EQ(stats.entries, 3u);
  EXPECT_FALSE(exists_nofollow(root_ / "dev/null"));
  EXPECT_FALSE(exists_nofollow(root_ / "dev/sda"));
  EXPECT_TRUE(exists_nofollow(root_ / "dev/ok"));
  ASSERT_EQ(warnings_.size(), 2u);
  EXPECT_NE(warnings_[0].find("\"dev/null\""), std::string::npos) << warnings_[0];
  EXPECT_NE(warnings_[0].find(layer_.string()), std::string::npos) << warnings_[0];

  warnings_.clear();
  Apply(l);  // allowed (we are root here)
  struct stat null = lstat_or_die(root_ / "dev/null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_mode & 07777, 0640u);
  EXPECT_EQ(major(null.st_rdev), 1u);
  EXPECT_EQ(minor(null.st_rdev), 3u);
  EXPECT_TRUE(S_ISBLK(lstat_or_die(root_ / "dev/sda").st_mode));
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(LayerApply, FileReplacesDirectoryAndDirectoryReplacesFile) {
  fs::create_directories(root_ / "was_dir/sub");
  write_file(root_ / "was_dir/sub/f", "lower");
  write_file(root_ / "was_file", "lower");
  fs::create_directories(root_ / "merge");
  write_file(root_ / "merge/lower", "lower");
  Layer l;
  l.file("was_dir", "now a file");
  l.dir("was_file/", 0710);
  l.file("was_file/child", "c");
  l.dir("merge/", 0750);
  l.file("merge/upper", "u");
  Apply(l);
  EXPECT_EQ(read_file(root_ / "was_dir"), "now a file");
  EXPECT_EQ(lstat_or_die(root_ / "was_file").st_mode, S_IFDIR | 0710);
  EXPECT_EQ(read_file(root_ / "was_file/child"), "c");
  EXPECT_EQ(lstat_or_die(root_ / "merge").st_mode, S_IFDIR | 0750);
  EXPECT_EQ(read_file(root_ / "merge/lower"), "lower");
  EXPECT_EQ(read_file(root_ / "merge/upper"), "u");
}

TEST_F(LayerApply, WhiteoutRemovesAWholeLowerTree) {
  fs::create_directories(root_ / "gone/a/b");
  write_file(root_ / "gone/a/b/f", "x");
  fs::create_symlink(outside_, root_ / "gone/a/link");  // removed as a link, never followed
  write_file(root_ / "file", "x");
  Layer l;
  l.file(".wh.gone");
  l.file("./.wh.file");
  l.file(".wh.never-existed");
  l.file("kept");
  l.file(".wh.kept");  // same-layer entries are not whited out
  ApplyStats stats = Apply(l);
  EXPECT_EQ(stats.whiteouts, 4u);
  EXPECT_FALSE(exists_nofollow(root_ / "gone"));
  EXPECT_FALSE(exists_nofollow(root_ / "file"));
  EXPECT_FALSE(exists_nofollow(root_ / ".wh.gone"));
  EXPECT_TRUE(exists_nofollow(root_ / "kept"));
  ExpectOutsideUntouched();
}

// The spec's example: lower a/b/c/bar; the layer re-creates a/b/c/foo under an opaque a/.
void MakeOpaqueLower(const fs::path& root) {
  fs::create_directories(root / "a/b/c");
  write_file(root / "a/b/c/bar", "lower");
  write_file(root / "a/lowerfile", "lower");
  fs::create_directories(root / "a/lowerdir/deep");
  fs::create_directories(root / "other");
  write_file(root / "other/stays", "lower");
}

TEST_F(LayerApply, OpaqueWhiteoutWorksWhereverTheMarkerIs) {
  for (bool marker_first : {true, false}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    MakeOpaqueLower(root_);
    Layer l;
    l.dir("a/");
    if (marker_first)
      l.file("a/.wh..wh..opq");
    l.dir("a/b/");
    l.dir("a/b/c/");
    l.file("a/b/c/foo", "upper");
    if (!marker_first)
      l.file("a/.wh..wh..opq");
    ApplyStats stats = Apply(l);
    EXPECT_EQ(stats.whiteouts, 1u);
    EXPECT_EQ(read_file(root_ / "a/b/c/foo"), "upper") << marker_first;
    EXPECT_FALSE(exists_nofollow(root_ / "a/b/c/bar")) << marker_first;
    EXPECT_FALSE(exists_nofollow(root_ / "a/lowerfile")) << marker_first;
    EXPECT_FALSE(exists_nofollow(root_ / "a/lowerdir")) << marker_first;
    EXPECT_FALSE(exists_nofollow(root_ / "a/.wh..wh..opq")) << marker_first;
    EXPECT_EQ(read_file(root_ / "other/stays"), "lower") << marker_first;
  }
}

TEST_F(LayerApply, OpaqueWhiteoutKeepsEntriesUnderImpliedParents) {
  MakeOpaqueLower(root_);
  Layer l;
  l.file("a/b/new", "upper");  // a/ and a/b/ have no entries: they exist in this layer anyway
  l.hardlink("a/lowerlink", "other/stays");
  l.file("a/.wh..wh..opq");
  l.file("a/b/.wh..wh..opq");  // nested and repeated markers are fine
  l.file("a/.wh..wh..opq");
  Apply(l);
  EXPECT_EQ(read_file(root_ / "a/b/new"), "upper");
  EXPECT_EQ(read_file(root_ / "a/lowerlink"), "lower");
  EXPECT_FALSE(exists_nofollow(root_ / "a/b/c"));
  EXPECT_FALSE(exists_nofollow(root_ / "a/lowerfile"));
  EXPECT_EQ(read_file(root_ / "other/stays"), "lower");
}

TEST_F(LayerApply, AufsMetadataIsSkipped) {
  Layer l;
  l.dir(".wh..wh.plnk/");
  l.file(".wh..wh.plnk/123.456", "x");
  l.file("real", "x");
  ApplyStats stats = Apply(l);
  EXPECT_EQ(stats.entries, 3u);
  EXPECT_EQ(stats.whiteouts, 0u);
  EXPECT_FALSE(exists_nofollow(root_ / ".wh..wh.plnk"));
  EXPECT_EQ(warnings_.size(), 2u);
}

TEST_F(LayerApply, RootEntryIsIgnoredAndFilesAtRootAreErrors) {
  ::chmod(root_.c_str(), 0751);
  Layer l;
  l.dir("./", 0700);
  l.dir("/", 0700);
  l.file("a", "x");
  Apply(l);
  EXPECT_EQ(lstat_or_die(root_).st_mode, S_IFDIR | 0751);
  Layer m;
  m.file(".", "x");
  ApplyFails(m, "root directory");
}

// The diff ID is the digest of the uncompressed tar, whatever compression carried it.
TEST_F(LayerApply, DiffIdIsTheDigestOfTheUncompressedTar) {
  Layer l;
  l.dir("d/");
  l.file("d/f", std::string(70000, 'q'));
  l.write(layer_);
  const oci::Digest expected = oci::sha256_of_file(layer_);
  const uint64_t tar_size = fs::file_size(layer_);
  for (Filter filter : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    l.write(layer_, filter);
    ApplyOptions options;
    options.expected_diff_id = expected;
    ApplyStats stats = apply_layer(layer_, root_, options);
    EXPECT_EQ(stats.diff_id, expected);
    EXPECT_EQ(stats.uncompressed, tar_size);
    EXPECT_EQ(fs::file_size(root_ / "d/f"), 70000u);
  }
}

// Snapshot cache poisoning: a layer that is not the one the config names is refused, naming both
// digests, after it was read whole (callers discard the partly applied root).
TEST_F(LayerApply, ADiffIdMismatchIsAnErrorNamingBothDigests) {
  Layer l;
  l.file("f", "not what the config says");
  l.write(layer_, Filter::kGzip);
  const oci::Digest claimed = oci::sha256_of("another layer");
  ApplyOptions options;
  options.expected_diff_id = claimed;
  try {
    apply_layer(layer_, root_, options);
    ADD_FAILURE() << "a layer with another diff ID applied";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(layer_.string()), std::string::npos) << what;
    EXPECT_NE(what.find(claimed.str()), std::string::npos) << what;
    EXPECT_NE(what.find("diff ID mismatch"), std::string::npos) << what;
  }
  ExpectOutsideUntouched();
}

// A compression bomb: a file claiming more than the limit is refused at its header, before any
// of its data is written; many entries that together pass it are refused as the stream grows.
TEST_F(LayerApply, ExpansionPastTheLimitIsRefused) {
  ApplyOptions options;
  options.max_expanded_bytes = 16 * 1024;
  Layer big;
  big.file("small", "s");
  big.file("big", std::string(1 << 20, '0'));
  big.write(layer_);
  // Only the header of "big" survives: what a sparse entry claiming a huge size looks like to
  // the reader, a header whose size no data backs.
  std::string tar = read_file(layer_);
  size_t header = tar.find(std::string("big\0", 4));
  ASSERT_NE(header, std::string::npos);
  fs::resize_file(layer_, header + 512);
  try {
    apply_layer(layer_, root_, options);
    ADD_FAILURE() << "a layer past its expansion limit applied";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("\"big\""), std::string::npos) << what;
    EXPECT_NE(what.find("compression bomb"), std::string::npos) << what;
  }
  EXPECT_TRUE(exists_nofollow(root_ / "small"));
  EXPECT_FALSE(exists_nofollow(root_ / "big"));

  Layer many;
  for (int i = 0; i < 100; ++i)
    many.dir("d" + std::to_string(i) + "/");
  many.write(layer_, Filter::kGzip);
  fs::remove_all(root_);
  fs::create_directories(root_);
  try {
    apply_layer(layer_, root_, options);
    ADD_FAILURE() << "a stream past its expansion limit applied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("compression bomb"), std::string::npos) << e.what();
  }
  ExpectOutsideUntouched();
}

TEST(ExpansionLimit, IsTheFloorOrTheRatioOfTheCompressedSize) {
  EXPECT_EQ(oci::expansion_limit(0), oci::kExpansionFloor);
  EXPECT_EQ(oci::expansion_limit(1 << 20), oci::kExpansionFloor);
  EXPECT_EQ(oci::expansion_limit(uint64_t{1} << 30), (uint64_t{1} << 30) * oci::kMaxExpansionRatio);
  EXPECT_EQ(oci::expansion_limit(~uint64_t{0}), ~uint64_t{0});
}

// Rootless: an unprivileged caller (nobody) applies with ownership and devices off. The child
// reports through its exit code: 0 is success, anything else names the failed check.
TEST_F(LayerApply, AppliesUnprivilegedWithoutOwnershipOrDevices) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to switch to nobody";
  const uid_t nobody = 65534;
  MakeOpaqueLower(root_);
  Layer l;
  l.dir("ro/", 0555);
  l.file("ro/f", "x", 0444);
  l.dir("ro/sub/", 0500);
  l.file("ro/sub/g", "y");
  l.node("dev/null", AE_IFCHR, 1, 3);
  l.file("a/.wh..wh..opq");
  l.file("a/new", "n");
  l.last().uid = 0;
  l.write(layer_);
  for (const auto& e : fs::recursive_directory_iterator(tmp_.path())) {
    ASSERT_EQ(::lchown(e.path().c_str(), nobody, nobody), 0);
  }
  ASSERT_EQ(::chown(tmp_.path().c_str(), nobody, nobody), 0);

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    try {
      if (::setresgid(nobody, nobody, nobody) != 0 || ::setresuid(nobody, nobody, nobody) != 0) {
        ::_exit(10);
      }
      int warnings = 0;
      ApplyOptions options;
      options.preserve_ownership = false;
      options.allow_devices = false;
      options.warn = [&warnings](const std::string&) { ++warnings; };
      apply_layer(layer_, root_, options);
      struct stat st {};
      if (::lstat((root_ / "ro/sub/g").c_str(), &st) != 0 || st.st_uid != nobody)
        code = 11;
      if (::lstat((root_ / "ro").c_str(), &st) != 0 || (st.st_mode & 07777) != 0555)
        code = 12;
      if (::lstat((root_ / "dev/null").c_str(), &st) == 0 || warnings != 1)
        code = 13;
      if (::lstat((root_ / "a/b").c_str(), &st) == 0)
        code = 14;
      if (::lstat((root_ / "a/new").c_str(), &st) != 0)
        code = 15;
    } catch (...) {
      code = 20;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // Let the (root) TempDir destructor clean up a read-only tree.
  ::chmod((root_ / "ro").c_str(), 0755);
  ::chmod((root_ / "ro/sub").c_str(), 0755);
}

}  // namespace
}  // namespace kiln::snapshotter
