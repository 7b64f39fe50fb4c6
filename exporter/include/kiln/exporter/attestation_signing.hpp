// Signed attestations in cosign's attestation format (`cosign attest --key` /
// `cosign verify-attestation --key`): each in-toto statement is wrapped in a DSSE envelope
//   {"payloadType":"application/vnd.in-toto+json","payload":BASE64(statement),
//    "signatures":[{"keyid":"","sig":BASE64(DER ECDSA P-256 over SHA-256 of PAE)}]}
// where PAE is DSSE's pre-authentication encoding,
//   "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload   (LEN: decimal byte count),
// and every envelope about one image manifest is a layer (media type kDsseMediaType, annotated
// with its predicateType) of one manifest tagged "sha256-<hex>.att" beside the image, in the same
// SignatureTarget kinds as signatures (registry, OCI layout, store).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/exporter/signing.hpp"

namespace kiln::exporter {

inline constexpr const char* kDsseMediaType = "application/vnd.dsse.envelope.v1+json";
inline constexpr const char* kPredicateTypeLayerAnnotation = "predicateType";

// "sha256-<hex>.att".
std::string attestation_tag(const oci::Digest& subject);

// DSSE's pre-authentication encoding of (payload type, payload).
std::string dsse_pae(std::string_view payload_type, std::string_view payload);

// The envelope of `statement` (in-toto JSON) signed by `key`, as compact JSON.
std::string dsse_envelope(std::string_view statement, const SigningKey& key);

// cosign's names for predicate types: slsaprovenance (v1 and v0.2 both match), slsaprovenance1,
// slsaprovenance02, spdx, spdxjson, cyclonedx, vuln, custom; anything with "://" is a URI
// itself. Throws kiln::Error for an unknown name.
std::vector<std::string> predicate_types(const std::string& name);

// The in-toto statements attached to `top` the way BuildKit stores them (attestation manifests
// in an index), each with the manifest digest it is about.
struct AttachedStatement {
  oci::Descriptor subject;  // the image manifest's entry in the index
  std::string statement;    // the statement's bytes
};
std::vector<AttachedStatement> attached_statements(SignatureTarget& target,
                                                   const oci::Descriptor& top);

// Signs `statement` (about `subject`) into the subject's .att manifest (created when missing).
// Returns false, changing nothing, when an envelope with the same statement that verifies with
// this key is already there.
bool sign_attestation(SignatureTarget& target, const oci::Digest& subject,
                      const std::string& statement, const SigningKey& key);
// The same envelope stored as an OCI 1.1 referrer of `subject` (artifactType kDsseMediaType,
// the empty config, the envelope as its layer) instead of in the .att manifest.
bool sign_attestation_as_referrer(SignatureTarget& target, const oci::Descriptor& subject,
                                  const std::string& statement, const SigningKey& key);

struct AttestationCheck {
  oci::Descriptor layer;
  bool verified = false;
  std::string failure;         // why not, for the user
  std::string predicate_type;  // the statement's
  std::string statement;       // the verified statement's bytes
};

// Checks every envelope in `subject`'s .att manifest and among its referrers: its blob digest, that
// it is an in-toto DSSE envelope whose signature over the PAE verifies with `key`, that the
// statement names `subject` among its subjects, and (when `types` is not empty) that its
// predicateType is one of them (others are skipped, not failures). nullopt when there is neither.
std::optional<std::vector<AttestationCheck>> verify_attestations(
    SignatureTarget& target, const oci::Digest& subject, const PublicKey& key,
    const std::string& key_name, const std::vector<std::string>& types);

}  // namespace kiln::exporter
