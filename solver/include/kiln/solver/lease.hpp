// TEMPORARY forwarding header: leases moved to the oci module, which owns the store's layout.
// solver/builder.cpp and solver/gc.cpp still include this; delete it once builder.cpp includes
// "kiln/oci/lease.hpp" and names oci::Lease.
#pragma once

#include "kiln/oci/lease.hpp"

namespace kiln::solver {
using oci::GcLock;
using oci::Lease;
}  // namespace kiln::solver
