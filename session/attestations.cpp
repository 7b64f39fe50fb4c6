#include "attestations.hpp"

#include "kiln/frontend/checks.hpp"
#include "kiln/oci/reference.hpp"

namespace kiln::session {
namespace {

using Json = nlohmann::ordered_json;

std::string escape_platform(const oci::Platform& p) {
  std::string out;
  for (char c : p.to_string())
    out += c == '/' ? std::string("%2F") : std::string(1, c);
  return out;
}

}  // namespace

std::string image_purl(const std::string& reference, const oci::Platform& platform) {
  std::string name = reference, version;
  if (auto ref = oci::try_parse_reference(reference)) {
    name = ref->domain == "docker.io" ? ref->path : ref->domain + "/" + ref->path;
    if (name.starts_with("library/"))
      name = name.substr(8);
    version = !ref->tag.empty() ? ref->tag : ref->digest ? ref->digest->str() : "latest";
  }
  std::string out = "pkg:docker/" + name;
  if (!version.empty())
    out += "@" + version;
  return out + "?platform=" + escape_platform(platform);
}

Json provenance_predicate(const SessionRequest& request, const ProvenanceInputs& in) {
  bool max = request.attest.provenance == "max";
  Json args = Json::object();
  for (const auto& [name, value] : request.build_args) {
    bool hidden =
        frontend::looks_like_secret_name(name) && !request.attest.include_args.count(name);
    args["build-arg:" + name] = hidden ? "<redacted>" : value;
  }
  if (request.target)
    args["target"] = *request.target;
  if (!request.platforms.empty())
    args["platform"] = in.platform.to_string();
  Json config_source = Json::object();
  if (!request.attest.context_uri.empty())
    config_source["uri"] = request.attest.context_uri;
  std::string digest = request.file->digest;
  if (digest.starts_with("sha256:"))
    config_source["digest"] = {{"sha256", digest.substr(7)}};
  config_source["path"] = request.file->filename;
  Json external{{"configSource", config_source},
                {"request", {{"frontend", "dockerfile.v0"}, {"args", args}}}};
  if (!in.context_digest.empty())
    external["request"]["locals"] =
        Json::array({{{"name", "context"}, {"digest", {{"sha256", in.context_digest}}}}});
  Json internal{{"builderPlatform", oci::host_platform().to_string()}};
  if (max && in.graph)
    internal["buildConfig"] = frontend::graph_to_json(*in.graph);
  Json deps = Json::array();
  for (const ResolvedDependency& d : in.dependencies)
    deps.push_back({{"uri", d.uri}, {"digest", {{d.digest.algorithm(), d.digest.hex()}}}});
  Json metadata{{"invocationID", in.invocation_id},
                {"startedOn", in.started},
                {"finishedOn", in.finished},
                {"buildkit_completeness", {{"request", true}, {"resolvedDependencies", true}}},
                {"buildkit_hermetic", false},
                {"buildkit_reproducible", request.solve.source_date_epoch.has_value()}};
  if (max) {
    Json steps = Json::array();
    for (const solver::BuiltImage::StepTiming& t : in.timings)
      steps.push_back({{"name", t.step}, {"cached", t.cached}, {"seconds", t.seconds}});
    metadata["kiln_steps"] = std::move(steps);
  }
  return {{"buildDefinition",
           {{"buildType",
             "https://github.com/moby/buildkit/blob/master/docs/attestations/"
             "slsa-definitions.md"},
            {"externalParameters", external},
            {"internalParameters", internal},
            {"resolvedDependencies", deps}}},
          {"runDetails",
           {{"builder", {{"id", "pkg:generic/kiln@" KILN_VERSION}}}, {"metadata", metadata}}}};
}

}  // namespace kiln::session
