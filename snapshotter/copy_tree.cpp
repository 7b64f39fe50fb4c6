#include "kiln/snapshotter/copy_tree.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "kiln/base/fd.hpp"
#include "kiln/base/io.hpp"
#include "kiln/snapshotter/layer_applier.hpp"
#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::snapshotter {
namespace fs = std::filesystem;

void copy_tree(const fs::path& from, const fs::path& to) {
  TempDir scratch({}, "kiln-copy-");
  fs::path tar = scratch.path() / "tree.tar";
  {
    UniqueFd fd = open_or_throw(tar, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FdSink sink(fd.get(), tar.string());
    LayerOptions options;
    options.compression.algorithm = Compression::kNone;
    write_layer(entries_from_directory(from), options, sink);
  }
  fs::create_directories(to);
  ApplyOptions apply;
  apply.preserve_ownership = ::geteuid() == 0;
  apply.allow_devices = ::geteuid() == 0;
  apply_layer(tar, to, apply);
}

}  // namespace kiln::snapshotter
