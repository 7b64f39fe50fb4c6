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
    std::string bytes = in_toto_statement(a, subject_name, image.digest).dump();
    oci::Descriptor layer;
    layer.media_type = kInTotoMediaType;
    layer.digest = store.put_blob(bytes);
    layer.size = static_cast<int64_t>(bytes.size());
    layer.annotations[kPredicateTypeAnnotation] = a.predicate_type;
    m.layers.push_back(layer);
    config["rootfs"]["diff_ids"].push_back(layer.digest.str());
  }
  std::string config_bytes = config.dump();
  m.config.media_type = oci::media_type::kOciConfig;
  m.config.digest = store.put_blob(config_bytes);
  m.config.size = static_cast<int64_t>(config_bytes.size());
  std::string bytes = oci::serialize(m);
  oci::Descriptor d;
  d.media_type = oci::media_type::kOciManifest;
  d.digest = store.put_blob(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  d.platform = oci::Platform{"unknown", "unknown", ""};
  d.annotations[kReferenceTypeAnnotation] = kAttestationManifestType;
  d.annotations[kReferenceDigestAnnotation] = image.digest.str();
  return d;
}

oci::Descriptor write_attestation_artifact(oci::Store& store, const oci::Descriptor& image,
                                           const std::string& subject_name,
                                           const Attestation& attestation,
                                           const std::string& created) {
  std::string statement = in_toto_statement(attestation, subject_name, image.digest).dump();
  oci::Descriptor layer;
  layer.media_type = kInTotoMediaType;
  layer.digest = store.put_blob(statement);
  layer.size = static_cast<int64_t>(statement.size());
  layer.annotations[kPredicateTypeAnnotation] = attestation.predicate_type;
  oci::Manifest m = detail::artifact_manifest(kInTotoMediaType, image, layer);
  store.put_blob("{}");  // the empty config
  m.annotations[kPredicateTypeAnnotation] = attestation.predicate_type;
  m.annotations["org.opencontainers.image.created"] = created;
  std::string bytes = oci::serialize(m);
  oci::Descriptor d;
  d.media_type = oci::media_type::kOciManifest;
  d.digest = store.put_blob(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  d.artifact_type = kInTotoMediaType;
  d.annotations = m.annotations;
  return d;
}

bool is_attestation_manifest(const oci::Descriptor& entry) {
  auto it = entry.annotations.find(kReferenceTypeAnnotation);
  return it != entry.annotations.end() && it->second == kAttestationManifestType;
}

}  // namespace kiln::exporter
