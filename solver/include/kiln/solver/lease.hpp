// TEMPORARY forwarding header: leases moved to the oci module, which owns the store's layout.
// Only solver/builder.cpp still includes this; delete it once builder.cpp includes
// "kiln/oci/lease.hpp" and names oci::Lease.
#pragma once

#include "kiln/oci/lease.hpp"

namespace kiln::solver {
using oci::Lease;
}  // namespace kiln::solver
