// Helpers shared by the layer writer and the differ, which walk the same kinds of trees.
// Private to the snapshotter. Errors are kiln::Error "OP PATH: reason".
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::snapshotter::detail {

// "/etc/hosts", "./etc/hosts/" and "etc/hosts" all name "etc/hosts"; "/", "." and "" name the
// root, returned as "".
std::string relative_path(std::string_view path);

// A layer entry made from a host file, with the identity that tells its other names (hard links).
// Entries that are not host files (whiteouts, markers) have nlink 0.
struct HostEntry {
  LayerEntry entry;
  dev_t dev = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;
};

// entry_from_lstat() with the identity from `st`.
HostEntry host_entry(const std::filesystem::path& host, std::string path, const struct stat& st);

// The entries sorted by path, every later path of a multiply-linked regular file turned into a
// tar hard link to the first, so that the target precedes its links as write_layer requires.
std::vector<LayerEntry> sorted_with_hard_links(std::vector<HostEntry> entries);

// The target of the symlink at `path`, however long.
std::string read_link_target(const std::filesystem::path& path);

// Names of the extended attributes of `path` itself (symlinks not followed); empty when it has
// none or its file system keeps none. The size query and the read may race with a writer: both
// readers retry until the value fits.
std::vector<std::string> xattr_names(const std::filesystem::path& path);
// The value of one attribute; nullopt when it was removed meanwhile or is not supported.
std::optional<std::string> xattr_value(const std::filesystem::path& path, const std::string& name);

}  // namespace kiln::snapshotter::detail
