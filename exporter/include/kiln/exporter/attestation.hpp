// In-toto attestations attached to an image the way BuildKit attaches them
// (docs/attestations/attestation-storage.md in BuildKit): for each platform's image manifest, an
// "attestation manifest" in the same image index, with
//   - config: a small OCI config ({"architecture":"unknown","os":"unknown",...});
//   - layers: one in-toto statement per attestation, media type application/vnd.in-toto+json,
//     annotated with in-toto.io/predicate-type;
//   - in the index: platform unknown/unknown and the annotations
//     vnd.docker.reference.type=attestation-manifest and vnd.docker.reference.digest=<image
//     manifest digest>.
// Tools that read BuildKit's attestations (buildx imagetools, docker scout, cosign's download
// of in-toto) read these.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::exporter {

inline constexpr const char* kInTotoMediaType = "application/vnd.in-toto+json";
inline constexpr const char* kInTotoStatementV01 = "https://in-toto.io/Statement/v0.1";
inline constexpr const char* kSpdxPredicate = "https://spdx.dev/Document";
inline constexpr const char* kCycloneDxPredicate = "https://cyclonedx.org/bom";
inline constexpr const char* kSlsaProvenanceV1 = "https://slsa.dev/provenance/v1";
inline constexpr const char* kPredicateTypeAnnotation = "in-toto.io/predicate-type";
inline constexpr const char* kReferenceTypeAnnotation = "vnd.docker.reference.type";
inline constexpr const char* kReferenceDigestAnnotation = "vnd.docker.reference.digest";
inline constexpr const char* kAttestationManifestType = "attestation-manifest";

struct Attestation {
  std::string predicate_type;  // kSpdxPredicate, kSlsaProvenanceV1, ...
  nlohmann::ordered_json predicate;
};

// {"_type": Statement v0.1, "predicateType", "subject": [{"name", "digest": {"sha256"}}],
// "predicate"}.
nlohmann::ordered_json in_toto_statement(const Attestation& attestation,
                                         const std::string& subject_name,
                                         const oci::Digest& subject);

// Writes the statements about `image` (a manifest descriptor) and their attestation manifest
// into the store; returns the manifest's descriptor as the index entry (platform and annotations
// set as above).
oci::Descriptor write_attestation_manifest(oci::Store& store, const oci::Descriptor& image,
                                           const std::string& subject_name,
                                           const std::vector<Attestation>& attestations);

// The same statement as an OCI 1.1 artifact instead (--attest-format referrers): a manifest with
// artifactType application/vnd.in-toto+json, the empty config, the statement as its one layer,
// `image` as its subject, and the predicate type and `created` as annotations. Returns the
// descriptor a referrers index lists (artifactType and annotations included).
oci::Descriptor write_attestation_artifact(oci::Store& store, const oci::Descriptor& image,
                                           const std::string& subject_name,
                                           const Attestation& attestation,
                                           const std::string& created);

// Whether an index entry is an attestation manifest, and the manifest digest it is about.
bool is_attestation_manifest(const oci::Descriptor& entry);

}  // namespace kiln::exporter
