// The digest of a whole build context, as `COPY . /` would see it: every path the ignore rules
// keep, with its type, permission bits, link target and content hash, and not its times (the
// same rules as a COPY's part of a cache key). Provenance records it. Hashing goes through the
// store's stat cache for the context (content_hasher.hpp), so an unchanged context is stat()ed,
// not read.
#pragma once

#include <filesystem>
#include <string>

#include "kiln/frontend/ignore.hpp"

namespace kiln::solver {

// 64 hex digits. Throws kiln::Error naming a file that cannot be read.
std::string context_digest(const std::filesystem::path& stat_cache_dir,
                           const std::filesystem::path& context,
                           const frontend::IgnoreMatcher& ignore);

}  // namespace kiln::solver
