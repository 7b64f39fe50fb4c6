#include "stage_root.hpp"

#include <gtest/gtest.h>

namespace kiln::solver {
namespace {

TEST(ChainId, FollowsTheOciDefinition) {
  oci::Digest a = oci::sha256_of("a"), b = oci::sha256_of("b"), c = oci::sha256_of("c");
  EXPECT_EQ(chain_id({a}), a);
  oci::Digest ab = oci::sha256_of(a.str() + " " + b.str());
  EXPECT_EQ(chain_id({a, b}), ab);
  EXPECT_EQ(chain_id({a, b, c}), oci::sha256_of(ab.str() + " " + c.str()));
  EXPECT_NE(chain_id({b, a}), chain_id({a, b}));
}

}  // namespace
}  // namespace kiln::solver
