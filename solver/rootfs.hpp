// Looking at an unpacked root filesystem as the container would: paths resolve inside the root,
// symlinks included, never reaching the host.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <optional>
#include <string>

#include "kiln/base/fd.hpp"

namespace kiln::solver {

// "/a/./b/../c/" → "a/c": an in-root path, relative, cleaned, ".." never above the root.
std::string clean_in_root(std::string_view path);

// Resolves the symlinks of every existing component of `path` as if `root` were "/" and returns
// the in-root path (relative, cleaned). Components that do not exist are kept as written. With
// follow_last false, a symlink as the last component is not followed.
std::string resolve_in_root(const std::filesystem::path& root, std::string_view path,
                            bool follow_last = true);

// lstat of an in-root path (already resolved), or nullopt when it does not exist.
std::optional<struct stat> lstat_in_root(const std::filesystem::path& root, const std::string& rel);

// Reads a small file inside the root (e.g. etc/passwd) following symlinks in-root; nullopt when
// it does not exist.
std::optional<std::string> read_in_root(const std::filesystem::path& root, std::string_view path);

}  // namespace kiln::solver
