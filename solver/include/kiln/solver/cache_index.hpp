// TEMPORARY forwarding header: the cache index and its record format moved to the oci module,
// which owns the store's layout. solver/builder.cpp includes this, and cli/build_command.cpp gets
// solver::CacheRecord through kiln/solver/builder.hpp; delete it (and its include in builder.hpp)
// once both name oci::CacheIndex and oci::CacheRecord.
#pragma once

#include "kiln/oci/cache_index.hpp"

namespace kiln::solver {
using oci::CacheIndex;
using oci::CacheRecord;
}  // namespace kiln::solver
