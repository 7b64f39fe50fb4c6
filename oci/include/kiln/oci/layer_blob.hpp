// What kiln knows of a layer blob's bytes before trusting them: its diff ID and how far it may
// expand. Shared by the layer applier (snapshotter), archive imports (image_source) and
// `kiln check`, so that all three hold layers to the same rules.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/oci/digest.hpp"

namespace kiln::oci {

// A compressed layer or archive may expand to at most
//   max(kExpansionFloor, kMaxExpansionRatio * its compressed size)
// bytes. Deflate (gzip) cannot expand more than about 1032:1, so no gzip layer reaches the
// ratio; zstd, xz and bzip2 reach 10^5:1 and more, and sparse tar entries can claim any size.
// The floor keeps small, highly compressible layers (a zero-filled image file) working; the ratio
// ties what a layer can write to what was downloaded or handed over.
inline constexpr uint64_t kExpansionFloor = uint64_t{4} << 30;
inline constexpr uint64_t kMaxExpansionRatio = 2048;
uint64_t expansion_limit(uint64_t compressed_bytes);

// The diff ID of the layer read from `fd` to its end: the sha256 of its content decompressed
// (gzip, zstd, xz, ... whatever libarchive detects; an uncompressed tar is hashed as it is).
// Reading stops with an error once the content passes expansion_limit() of what was read. Throws
// kiln::Error "NAME: reason" when it cannot be read or decompressed.
Digest uncompressed_digest(int fd, const std::string& name);

}  // namespace kiln::oci
