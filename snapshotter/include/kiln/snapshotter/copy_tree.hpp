// Copying a directory tree the way a layer would carry it.
#pragma once

#include <filesystem>

namespace kiln::snapshotter {

// Copies the tree under `from` into `to` (created when missing; what it holds already is merged
// with, as a layer is applied) with everything the layer format keeps: modes, times, symlinks,
// hard links, user.* and security.capability xattrs, and, when the process is root, owners and
// devices. It goes through an uncompressed layer in a temporary directory under $TMPDIR: written
// by write_layer(entries_from_directory(from)), then apply_layer()ed onto `to`, so the copy is
// exactly what a layer of `from` would unpack to. Throws kiln::Error naming the path or entry
// that failed; `to` may then be partly written.
void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace kiln::snapshotter
