// The attestations a build attaches (SessionRequest::attest): an SBOM of each platform's root
// filesystem and SLSA v1 provenance in BuildKit's predicate shape. Internal to the session.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kiln/exporter/attestation.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/session/session.hpp"

namespace kiln::session {

// A resolved input image: its purl ("pkg:docker/busybox@latest?platform=linux%2Famd64") and
// manifest digest.
struct ResolvedDependency {
  std::string uri;
  oci::Digest digest;
};

struct ProvenanceInputs {
  oci::Platform platform;
  const frontend::OpGraph* graph = nullptr;  // mode=max: recorded as the build config
  std::vector<ResolvedDependency> dependencies;
  std::vector<solver::BuiltImage::StepTiming> timings;
  std::string context_digest;     // 64 hex, "" when the context is not a directory
  std::string started, finished;  // RFC 3339
  std::string invocation_id;
};

// The SLSA v1 provenance predicate (https://slsa.dev/provenance/v1) as BuildKit writes it:
// buildDefinition {buildType, externalParameters {configSource, request}, internalParameters,
// resolvedDependencies}, runDetails {builder, metadata}. Build args whose names look like
// credentials are "<redacted>" unless named in include_args; secrets are not recorded.
nlohmann::ordered_json provenance_predicate(const SessionRequest& request,
                                            const ProvenanceInputs& inputs);

// The purl BuildKit gives an image reference: pkg:docker/NAME@TAG?platform=OS%2FARCH.
std::string image_purl(const std::string& reference, const oci::Platform& platform);

}  // namespace kiln::session
