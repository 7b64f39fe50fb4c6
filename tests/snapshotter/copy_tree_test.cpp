#include "kiln/snapshotter/copy_tree.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::string read(const fs::path& path) {
  std::ostringstream out;
  out << std::ifstream(path, std::ios::binary).rdbuf();
  return out.str();
}

struct stat lstat_of(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(CopyTree, CopiesWhatALayerKeepsIntoANewDirectory) {
  TempDir dir;
  fs::path from = dir.path() / "from", to = dir.path() / "a" / "to";
  write(from / "bin" / "tool", "#!/bin/sh\n");
  ASSERT_EQ(::chmod((from / "bin" / "tool").c_str(), 04750), 0);
  fs::create_hard_link(from / "bin" / "tool", from / "bin" / "alias");
  fs::create_symlink("bin/tool", from / "link");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1234567890, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (from / "bin" / "tool").c_str(), times, 0), 0);

  copy_tree(from, to);

  EXPECT_EQ(read(to / "bin" / "tool"), "#!/bin/sh\n");
  struct stat tool = lstat_of(to / "bin" / "tool");
  EXPECT_EQ(tool.st_mode, S_IFREG | 04750);
  EXPECT_EQ(tool.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(tool.st_ino, lstat_of(to / "bin" / "alias").st_ino) << "hard links stay links";
  EXPECT_EQ(fs::read_symlink(to / "link"), "bin/tool");
  EXPECT_EQ(read(from / "bin" / "tool"), "#!/bin/sh\n") << "the source is left alone";
}

TEST(CopyTree, MergesIntoAnExistingDirectoryAndNamesAMissingSource) {
  TempDir dir;
  fs::path from = dir.path() / "from", to = dir.path() / "to";
  write(from / "new", "new");
  write(to / "old", "old");
  copy_tree(from, to);
  EXPECT_EQ(read(to / "new"), "new");
  EXPECT_EQ(read(to / "old"), "old");

  try {
    copy_tree(dir.path() / "missing", to);
    ADD_FAILURE() << "copied a missing tree";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir.path() / "missing").string()), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kiln::snapshotter
