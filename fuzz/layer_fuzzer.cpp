// libFuzzer target: arbitrary bytes applied as a layer (plain or compressed: whatever libarchive
// detects) onto a fresh root, beside sentinel files. Whatever the bytes say, apply_layer_fd either
// succeeds or throws kiln::Error, and nothing outside the root is created, changed or removed. Any
// other exception, a sanitizer report, a hang, or a sentinel that changed is a bug (the last one
// aborts, naming what changed).
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/snapshotter/layer_applier.hpp"

namespace {

namespace fs = std::filesystem;

// Everything observable about a tree, without following symlinks.
std::string describe(const fs::path& dir) {
  std::map<std::string, std::string> lines;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0)
      continue;
    std::ostringstream line;
    line << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid << " "
         << st.st_nlink << " " << st.st_size << " " << st.st_mtim.tv_sec << "."
         << st.st_mtim.tv_nsec << " " << st.st_ino;
    if (S_ISLNK(st.st_mode))
      line << " -> " << fs::read_symlink(it->path(), ec).string();
    lines[fs::relative(it->path(), dir, ec).string()] = line.str();
  }
  std::string out;
  for (const auto& [k, v] : lines)
    out += k + " " + v + "\n";
  return out;
}

// The directory the fuzzer works in: `outside` holds the sentinels, `root` is made afresh for
// every input. Entries in layers that name the sentinels ("../outside/sentinel", an absolute
// path to it, a symlink to it) are in the seed corpus (scripts/fuzz.sh).
struct World {
  kiln::TempDir dir{{}, "kiln-layer-fuzz-"};
  fs::path outside = dir.path() / "outside";
  fs::path root = dir.path() / "root";
  std::string before;

  World() {
    fs::create_directories(outside / "dir");
    std::ofstream(outside / "sentinel") << "sentinel\n";
    std::ofstream(outside / "dir" / "x") << "x\n";
    fs::create_symlink("sentinel", outside / "link");
    before = describe(outside);
  }
};

World& world() {
  static World w;
  return w;
}

[[noreturn]] void escaped(const std::string& what) {
  std::fprintf(stderr, "layer_fuzzer: the layer reached outside its root: %s\n", what.c_str());
  std::abort();
}

// Removes the root, whatever modes the layer gave its directories.
void remove_root(const fs::path& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      ::chmod(it->path().c_str(), 0700);
  }
  ::chmod(root.c_str(), 0700);
  fs::remove_all(root, ec);
  if (ec)
    escaped("cannot remove the root: " + ec.message());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  fs::create_directory(w.root);
  int fd = ::memfd_create("layer", MFD_CLOEXEC);
  if (fd < 0)
    escaped("memfd_create failed");
  kiln::UniqueFd layer(fd);
  kiln::write_all(layer.get(), data, size, "memfd");
  ::lseek(layer.get(), 0, SEEK_SET);
  kiln::snapshotter::ApplyOptions options;
  options.preserve_ownership = ::geteuid() == 0;
  options.allow_devices = false;
  // Keeps each run small; the limit itself is what a bomb input exercises.
  options.max_expanded_bytes = uint64_t{64} << 20;
  try {
    kiln::snapshotter::apply_layer_fd(layer.get(), "fuzz", w.root, options);
  } catch (const kiln::Error&) {
  }
  std::string after = describe(w.outside);
  if (after != w.before)
    escaped("the sentinels changed:\n" + w.before + "became:\n" + after);
  for (const auto& e : fs::directory_iterator(w.dir.path())) {
    std::string name = e.path().filename().string();
    if (name != "outside" && name != "root")
      escaped("a new entry beside the root: " + name);
  }
  remove_root(w.root);
  return 0;
}
