// What signing.cpp shares with attestation_signing.cpp: cosign's manifest pieces.
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

}  // namespace kiln::exporter::detail
