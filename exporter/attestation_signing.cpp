#include "kiln/exporter/attestation_signing.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kiln/base/base64.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/attestation.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "signing_internal.hpp"

namespace kiln::exporter {
namespace {

using detail::blob_descriptor;
using Json = nlohmann::json;

struct Envelope {
  std::string payload_type;
  std::string payload;                  // decoded
  std::vector<std::string> signatures;  // DER, decoded
};

// nullopt when `text` is not a DSSE envelope.
std::optional<Envelope> parse_envelope(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("payloadType") || !j["payloadType"].is_string() ||
      !j.contains("payload") || !j["payload"].is_string() || !j.contains("signatures") ||
      !j["signatures"].is_array()) {
    return std::nullopt;
  }
  Envelope e;
  e.payload_type = j["payloadType"];
  try {
    e.payload = base64_decode(j["payload"].get<std::string>());
    for (const Json& s : j["signatures"]) {
      if (s.is_object() && s.contains("sig") && s["sig"].is_string())
        e.signatures.push_back(base64_decode(s["sig"].get<std::string>()));
    }
  } catch (const Error&) {
    return std::nullopt;
  }
  return e;
}

bool names_subject(const Json& statement, const oci::Digest& subject) {
  if (!statement.contains("subject") || !statement["subject"].is_array())
    return false;
  for (const Json& s : statement["subject"]) {
    if (s.is_object() && s.contains("digest") && s["digest"].is_object() &&
        s["digest"].value(subject.algorithm(), "") == subject.hex()) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string attestation_tag(const oci::Digest& subject) {
  return subject.algorithm() + "-" + subject.hex() + ".att";
}

std::string dsse_pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 " + std::to_string(payload_type.size()) + " ";
  out += payload_type;
  out += " " + std::to_string(payload.size()) + " ";
  out += payload;
  return out;
}

std::string dsse_envelope(std::string_view statement, const SigningKey& key) {
  nlohmann::ordered_json e;
  e["payloadType"] = kInTotoMediaType;
  e["payload"] = base64_encode(statement);
  e["signatures"] = nlohmann::ordered_json::array(
      {{{"keyid", ""}, {"sig", base64_encode(key.sign(dsse_pae(kInTotoMediaType, statement)))}}});
  return e.dump();
}

std::vector<std::string> predicate_types(const std::string& name) {
  if (name.find("://") != std::string::npos)
    return {name};
  if (name == "slsaprovenance")
    return {kSlsaProvenanceV1, "https://slsa.dev/provenance/v0.2"};
  if (name == "slsaprovenance1")
    return {kSlsaProvenanceV1};
  if (name == "slsaprovenance02")
    return {"https://slsa.dev/provenance/v0.2"};
  if (name == "spdx" || name == "spdxjson")
    return {kSpdxPredicate};
  if (name == "cyclonedx")
    return {kCycloneDxPredicate};
  if (name == "vuln")
    return {"https://cosign.sigstore.dev/attestation/vuln/v1"};
  if (name == "custom")
    return {"https://cosign.sigstore.dev/attestation/v1"};
  throw Error("unknown attestation type " + quote(name) +
              " (slsaprovenance, slsaprovenance1, slsaprovenance02, spdx, spdxjson, cyclonedx, "
              "vuln, custom, or a predicate type URI)");
}

std::vector<AttachedStatement> attached_statements(SignatureTarget& target,
                                                   const oci::Descriptor& top) {
  std::vector<AttachedStatement> out;
  if (!oci::media_type::is_index(top.media_type))
    return out;
  oci::Index index = oci::parse_index(target.read(top));
  for (const oci::Descriptor& d : index.manifests) {
    if (!is_attestation_manifest(d))
      continue;
    oci::Digest about = oci::Digest::parse(d.annotations.at(kReferenceDigestAnnotation));
    auto image = std::find_if(index.manifests.begin(), index.manifests.end(),
                              [&](const oci::Descriptor& e) { return e.digest == about; });
    if (image == index.manifests.end())
      continue;  // about a manifest this index does not hold
    for (const oci::Descriptor& layer : oci::parse_manifest(target.read(d)).layers) {
      if (layer.media_type == kInTotoMediaType)
        out.push_back({*image, target.read(layer)});
    }
  }
  return out;
}

namespace {

// Whether one of `layers` is an envelope of `statement` signed by `key` (signing again then
// changes nothing).
bool attested_by(SignatureTarget& target, const std::vector<oci::Descriptor>& layers,
                 const std::string& statement, const SigningKey& key) {
  PublicKey public_key = key.public_key();
  std::string pae = dsse_pae(kInTotoMediaType, statement);
  for (const oci::Descriptor& d : layers) {
    if (d.media_type != kDsseMediaType)
      continue;
    std::optional<Envelope> e = parse_envelope(target.read(d));
    if (e && e->payload == statement &&
        std::any_of(e->signatures.begin(), e->signatures.end(),
                    [&](const std::string& sig) { return public_key.verifies(pae, sig); })) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool sign_attestation(SignatureTarget& target, const oci::Digest& subject,
                      const std::string& statement, const SigningKey& key) {
  std::string tag = attestation_tag(subject);
  oci::Manifest manifest;
  if (std::optional<std::string> existing = target.read_tagged_manifest(tag))
    manifest = detail::parse_tagged_manifest(*existing, target, tag);
  if (attested_by(target, manifest.layers, statement, key))
    return false;
  std::string envelope = dsse_envelope(statement, key);
  oci::Descriptor layer = blob_descriptor(kDsseMediaType, envelope);
  layer.annotations[kSignatureAnnotation] = "";
  layer.annotations[kPredicateTypeLayerAnnotation] =
      Json::parse(statement, nullptr, false).value("predicateType", "");
  manifest.layers.push_back(layer);
  std::string config = detail::signature_config(manifest.layers);
  manifest.schema_version = 2;
  manifest.media_type = oci::media_type::kOciManifest;
  manifest.config = blob_descriptor(oci::media_type::kOciConfig, config);
  // The layers already there are in the repository; only the new ones need storing.
  target.write_tagged_manifest(tag, {{layer, envelope}, {manifest.config, config}},
                               oci::serialize(manifest));
  return true;
}

bool sign_attestation_as_referrer(SignatureTarget& target, const oci::Descriptor& subject,
                                  const std::string& statement, const SigningKey& key) {
  if (attested_by(target, detail::referrer_layers(target, subject.digest, kDsseMediaType),
                  statement, key)) {
    return false;
  }
  std::string envelope = dsse_envelope(statement, key);
  oci::Descriptor layer = blob_descriptor(kDsseMediaType, envelope);
  std::string predicate = Json::parse(statement, nullptr, false).value("predicateType", "");
  layer.annotations[kPredicateTypeLayerAnnotation] = predicate;
  oci::Manifest manifest = detail::artifact_manifest(kDsseMediaType, subject, layer);
  manifest.annotations[kPredicateTypeLayerAnnotation] = predicate;
  target.write_referrer(subject.digest, {{layer, envelope}, {manifest.config, "{}"}},
                        oci::serialize(manifest));
  return true;
}

std::optional<std::vector<AttestationCheck>> verify_attestations(
    SignatureTarget& target, const oci::Digest& subject, const PublicKey& key,
    const std::string& key_name, const std::vector<std::string>& types) {
  std::string tag = attestation_tag(subject);
  std::vector<oci::Descriptor> layers;
  bool found = false;
  if (std::optional<std::string> bytes = target.read_tagged_manifest(tag)) {
    found = true;
    layers = detail::parse_tagged_manifest(*bytes, target, tag).layers;
  }
  std::vector<oci::Descriptor> referred = detail::referrer_layers(target, subject, kDsseMediaType);
  found = found || !referred.empty();
  layers.insert(layers.end(), referred.begin(), referred.end());
  if (!found)
    return std::nullopt;
  std::vector<AttestationCheck> checks;
  for (const oci::Descriptor& layer : layers) {
    AttestationCheck check;
    check.layer = layer;
    auto fail = [&](std::string why) {
      check.failure = std::move(why);
      checks.push_back(check);
    };
    std::string text;
    try {
      text = target.read(layer);  // checks the digest
    } catch (const Error& e) {
      fail(e.what());
      continue;
    }
    std::optional<Envelope> e = parse_envelope(text);
    if (!e) {
      fail("not a DSSE envelope");
      continue;
    }
    if (e->payload_type != kInTotoMediaType) {
      fail("payload type " + quote(e->payload_type) + ", not in-toto");
      continue;
    }
    Json statement = Json::parse(e->payload, nullptr, false);
    check.predicate_type = statement.is_object() ? statement.value("predicateType", "") : "";
    if (!types.empty() &&
        std::find(types.begin(), types.end(), check.predicate_type) == types.end()) {
      continue;  // another kind of attestation
    }
    std::string pae = dsse_pae(e->payload_type, e->payload);
    if (std::none_of(e->signatures.begin(), e->signatures.end(),
                     [&](const std::string& sig) { return key.verifies(pae, sig); })) {
      fail("signature does not verify with " + key_name);
      continue;
    }
    if (!statement.is_object()) {
      fail("the signed payload is not an in-toto statement");
      continue;
    }
    if (!names_subject(statement, subject)) {
      fail("the statement is not about " + subject.str());
      continue;
    }
    check.verified = true;
    check.statement = e->payload;
    checks.push_back(std::move(check));
  }
  return checks;
}

}  // namespace kiln::exporter
