#include "kiln/exporter/attestation.hpp"

#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "signing_internal.hpp"

namespace kiln::exporter {

nlohmann::ordered_json in_toto_statement(const Attestation& attestation,
                                         const std::string& subject_name,
                                         const oci::Digest& subject) {
  nlohmann::ordered_json s;
  s["_type"] = kInTotoStatementV01;
  s["predicateType"] = attestation.predicate_type;
  s["subject"] = nlohmann::ordered_json::array(
      {{{"name", subject_name}, {"digest", {{subject.algorithm(), subject.hex()}}}}});
  s["predicate"] = attestation.predicate;
  return s;
}

namespace {

// Stores `bytes`; their descriptor.
oci::Descriptor put(oci::Store& store, const char* media_type, const std::string& bytes) {
  oci::Descriptor d = detail::blob_descriptor(media_type, bytes);
  store.put_blob(bytes);
  return d;
}

// Stores the statement of `attestation` about `image`; its layer descriptor.
oci::Descriptor put_statement(oci::Store& store, const oci::Descriptor& image,
                              const std::string& subject_name, const Attestation& attestation) {
  oci::Descriptor layer = put(store, kInTotoMediaType,
                              in_toto_statement(attestation, subject_name, image.digest).dump());
  layer.annotations[kPredicateTypeAnnotation] = attestation.predicate_type;
  return layer;
}

}  // namespace

oci::Descriptor write_attestation_manifest(oci::Store& store, const oci::Descriptor& image,
                                           const std::string& subject_name,
                                           const std::vector<Attestation>& attestations) {
  oci::Manifest m;
  m.media_type = oci::media_type::kOciManifest;
  nlohmann::ordered_json config{
      {"architecture", "unknown"},
      {"os", "unknown"},
      {"config", nlohmann::ordered_json::object()},
      {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}};
  for (const Attestation& a : attestations) {
    oci::Descriptor layer = put_statement(store, image, subject_name, a);
    m.layers.push_back(layer);
    config["rootfs"]["diff_ids"].push_back(layer.digest.str());
  }
  m.config = put(store, oci::media_type::kOciConfig, config.dump());
  oci::Descriptor d = put(store, oci::media_type::kOciManifest, oci::serialize(m));
  d.platform = oci::Platform{"unknown", "unknown", ""};
  d.annotations[kReferenceTypeAnnotation] = kAttestationManifestType;
  d.annotations[kReferenceDigestAnnotation] = image.digest.str();
  return d;
}

oci::Descriptor write_attestation_artifact(oci::Store& store, const oci::Descriptor& image,
                                           const std::string& subject_name,
                                           const Attestation& attestation,
                                           const std::string& created) {
  oci::Descriptor layer = put_statement(store, image, subject_name, attestation);
  oci::Manifest m = detail::artifact_manifest(kInTotoMediaType, image, layer);
  store.put_blob("{}");  // the empty config
  m.annotations[kPredicateTypeAnnotation] = attestation.predicate_type;
  m.annotations["org.opencontainers.image.created"] = created;
  oci::Descriptor d = put(store, oci::media_type::kOciManifest, oci::serialize(m));
  d.artifact_type = kInTotoMediaType;
  d.annotations = m.annotations;
  return d;
}

bool is_attestation_manifest(const oci::Descriptor& entry) {
  auto it = entry.annotations.find(kReferenceTypeAnnotation);
  return it != entry.annotations.end() && it->second == kAttestationManifestType;
}

}  // namespace kiln::exporter
