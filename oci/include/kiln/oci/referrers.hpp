// OCI 1.1 referrers: manifests that name another manifest as their `subject` (attestations,
// signatures), and how to find them (OCI distribution-spec 1.1):
//   - a registry with the referrers API lists them at GET /v2/<repo>/referrers/<digest>;
//   - elsewhere, the "referrers tag schema": an image index tagged "sha256-<hex of the subject>"
//     whose manifests are the referrers' descriptors (with artifactType and annotations). The
//     pusher of a referrer keeps that index up to date.
// The local store uses the tag schema too: REPOSITORY:sha256-<hex> beside the image's own tag.
#pragma once

#include <string>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {

// "sha256-<hex>".
std::string referrers_tag(const Digest& subject);

// The descriptor a referrers index lists for an artifact manifest (its artifactType, or its
// config's media type, and its annotations), as the distribution spec asks.
Descriptor referrer_descriptor(const Descriptor& manifest, const Manifest& parsed);

// `index` with `referrer` added (replacing an entry of the same digest).
Index with_referrer(Index index, const Descriptor& referrer);

// The store: the referrers of `subject` recorded under `repository` (a name as Store::tag takes
// it, without tag: "app", "registry.example.com/team/app"); empty when none.
std::vector<Descriptor> store_referrers(const Store& store, const std::string& repository,
                                        const Digest& subject);
// Records `referrer` (already in the store) as a referrer of `subject` under `repository`.
void add_store_referrer(Store& store, const std::string& repository, const Digest& subject,
                        const Descriptor& referrer);

// A registry: the referrers of `subject` in `repo`, from the API when the registry has one, else
// from the fallback tag (empty when neither has any).
std::vector<Descriptor> registry_referrers(RegistryClient& client, const std::string& repo,
                                           const Digest& subject);
// After the referrer's manifest is pushed: where the registry has no referrers API, adds it to
// the fallback tag's index (created when missing). Returns true when the API made that
// unnecessary.
bool publish_registry_referrer(RegistryClient& client, const std::string& repo,
                               const Digest& subject, const Descriptor& referrer);

}  // namespace kiln::oci
