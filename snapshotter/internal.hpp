// Helpers shared by the layer writer and the differ, which walk the same kinds of trees.
// Private to the snapshotter. Errors are kiln::Error "OP PATH: reason".
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::snapshotter::detail {

// "/etc/hosts", "./etc/hosts/" and "etc/hosts" all name "etc/hosts"; "/", "." and "" name the
// root, returned as "".
std::string relative_path(std::string_view path);

// The target of the symlink at `path`, however long.
std::string read_link_target(const std::filesystem::path& path);

// Names of the extended attributes of `path` itself (symlinks not followed); empty when it has
// none or its file system keeps none. The size query and the read may race with a writer: both
// readers retry until the value fits.
std::vector<std::string> xattr_names(const std::filesystem::path& path);
// The value of one attribute; nullopt when it was removed meanwhile or is not supported.
std::optional<std::string> xattr_value(const std::filesystem::path& path, const std::string& name);

}  // namespace kiln::snapshotter::detail
