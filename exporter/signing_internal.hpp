// What signing.cpp shares with attestation_signing.cpp and attestation.cpp: cosign's manifest
// pieces and OCI 1.1 artifacts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/exporter/signing.hpp"
#include "kiln/oci/manifest.hpp"

namespace kiln::exporter::detail {

// cosign's config of a signature (or attestation) manifest: no platform, one diff ID and one
// history entry per layer, zero times.
std::string signature_config(const std::vector<oci::Descriptor>& layers);
// A tagged signature or attestation manifest, parsed; kiln::Error naming `tag` when it is not one.
oci::Manifest parse_tagged_manifest(const std::string& bytes, const SignatureTarget& target,
                                    const std::string& tag);
oci::Descriptor blob_descriptor(const char* media_type, std::string_view bytes);

// An OCI 1.1 artifact manifest: `artifact_type`, the empty config ({}), `layer`, and `subject`
// (its media type, digest and size only).
oci::Manifest artifact_manifest(const std::string& artifact_type, const oci::Descriptor& subject,
                                const oci::Descriptor& layer);

// The layers of the referrers of `subject` whose artifact type is `artifact_type`.
std::vector<oci::Descriptor> referrer_layers(SignatureTarget& target, const oci::Digest& subject,
                                             const std::string& artifact_type);

}  // namespace kiln::exporter::detail
