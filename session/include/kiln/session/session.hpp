// A build session: everything one `kiln build` does around the solver, as an API any caller can
// fill and run — plan the Containerfile for each platform (base images looked up only for the
// stages the target needs), run one Builder per platform at once, import and export cache,
// commit the images (an index for several platforms), tag, write outputs, push and sign.
//
// The CLI only turns flags into a SessionRequest and prints the result.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kiln/exporter/exporter.hpp"
#include "kiln/exporter/signing.hpp"
#include "kiln/frontend/ast.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/snapshotter/layer_writer.hpp"
#include "kiln/solver/builder.hpp"
#include "kiln/solver/progress.hpp"

namespace kiln::session {

// Where a build's files go besides the store (-o).
struct Output {
  enum class Type { kOciLayout, kOciArchive, kDockerArchive, kLocal, kTar };
  Type type = Type::kOciLayout;
  std::filesystem::path dest;  // "-" for standard output where the type allows it
};

// A cache to import (--cache-from) or export (--cache-to): an OCI layout directory or a registry
// reference.
struct CacheLocation {
  enum class Type { kLocal, kRegistry };
  Type type = Type::kLocal;
  std::string location;  // the directory or the reference
  bool max = false;      // export: every stage's steps (mode=max), else the target's (min)
};

// Where a build pushes its image (--push, -o type=registry, -o type=image,push=true).
struct PushTarget {
  std::string name;  // a reference, as given
  // buildx's push-by-digest=true: the image (or the index) and everything it references go to
  // name's repository by digest, and no tag is made there; name then has no tag or digest.
  bool by_digest = false;
};

struct SessionRequest {
  // What every platform's Builder is given: the context and its ignore rules, layer options,
  // SOURCE_DATE_EPOCH, labels, progress, --no-cache(-filter) (unknown stages are errors here),
  // jobs, secrets, SSH agents, snapshotter, runtime. The session adds the platform, the images,
  // the imported caches and the directory contexts' ignore rules.
  solver::BuildRequest solve;

  // What to build.
  const frontend::Containerfile* file = nullptr;
  std::vector<std::pair<std::string, std::string>> build_args;
  std::optional<std::string> target;
  std::vector<oci::Platform> platforms;  // empty: the host's
  // --all-platforms (buildah): every platform all the target's base images offer, in place of
  // `platforms`. Stages FROM --platform=... and FROM scratch do not count; with no base image
  // left it is an error.
  bool all_platforms = false;
  // --manifest NAME (buildah, podman): the built image — each platform's, for several — is added
  // to the manifest list NAME in the store (an image index, created when missing), replacing an
  // entry for the same platform. NAME naming an image that is not a list is an error before
  // anything runs.
  std::optional<std::string> manifest_list;
  std::map<std::string, frontend::NamedContext> named_contexts;
  std::optional<std::string> first_base;  // --from: replaces the first FROM's image

  // RUN settings that become part of exec ops: network, extra hosts, insecure.
  frontend::LowerOptions run;

  // Images and cache.
  oci::RegistryOptions registry;
  // When registry bases are pulled (podman's --pull policies): kMissing, only when the store
  // lacks them; kAlways, every build (a registry failure is an error); kNewer, every build, but
  // the local image is used when the registry cannot be reached; kNever, never (a missing image
  // is an error).
  enum class PullPolicy { kMissing, kAlways, kNewer, kNever };
  PullPolicy pull = PullPolicy::kMissing;
  std::vector<CacheLocation> cache_from, cache_to;

  // The result.
  exporter::ManifestFormat format = exporter::ManifestFormat::kOci;
  std::map<std::string, std::string> manifest_annotations, index_annotations;
  std::vector<std::string> tags;
  std::vector<Output> outputs;
  std::vector<PushTarget> push;                  // where to push the image
  std::optional<exporter::SigningKey> sign_key;  // signs what is pushed
  std::filesystem::path metadata_file;           // buildx's --metadata-file

  // --sbom, --provenance, --attest (buildx): in-toto attestations attached to each platform's
  // image the way BuildKit attaches them (exporter/attestation.hpp). The result is then always
  // an image index, with OCI media types (--format docker is an error).
  struct Attestations {
    bool sbom = false;
    bool cyclonedx = false;  // the SBOM as CycloneDX; SPDX 2.3 otherwise
    // "min" or "max"; nullopt: no provenance. max adds the op graph and each step's time.
    std::optional<std::string> provenance;
    // Build args recorded even though their names look like credentials
    // (frontend::looks_like_secret_name); the others with such names are recorded as
    // "<redacted>". Secrets (--secret) are never recorded.
    std::set<std::string> include_args;
    std::string context_uri;  // what the user named as the context: a directory, URL, "-"
    // buildah's --sbom-output and --sbom-purl-output: the SBOM document, and the package URLs
    // it lists (one a line), also written to these files (one platform only).
    std::filesystem::path sbom_output, sbom_purl_output;
    // --attest-format referrers: each statement an OCI 1.1 artifact whose subject is the
    // platform's image (oci/referrers.hpp: the store keeps them under each tag's repository,
    // a push publishes them through the registry's referrers API or its fallback tag), and the
    // image itself stays as it would be without attestations. Otherwise BuildKit's layout, and
    // a push to a registry that has the referrers API publishes the artifacts there as well.
    bool referrers = false;
    bool any() const { return sbom || provenance.has_value(); }
  };
  Attestations attest;
};

struct SessionResult {
  std::string image_id;  // the config digest, or the index digest for several platforms
  oci::Descriptor top;   // the manifest, or the index
  size_t steps_run = 0, steps_cached = 0;
  // Why each step that ran missed the cache, every platform's (with solve.history_scope set).
  std::vector<solver::StepExplanation> explanations;
};

// The value of a BUILDKIT_DOCKERFILE_CHECK build argument (the last one), which replaces the
// file's `# check=` directive.
std::optional<std::string> check_override(
    const std::vector<std::pair<std::string, std::string>>& build_args);

// Checks what can be checked before anything runs (outputs that cannot hold several platforms,
// signing (`signing`, or a sign_key) without a push, malformed names, a push by digest to a name
// with a tag): throws kiln::Error.
void validate(const SessionRequest& request, bool signing = false);

// Runs the whole build into `store`. Throws kiln::InputError at FILE:LINE:COL for the
// Containerfile's errors, kiln::Error for everything else; several failing platforms are one
// error naming each.
SessionResult run(oci::Store& store, const SessionRequest& request);

// The plan of the first platform, for what looks at a Containerfile without building it
// (`--call check|outline`): bases are looked up in `store` when one is given, never pulled; a
// base that is not there is unknown (frontend::BaseImage::known). With `all_stages`, every
// stage's base is looked up, not only those of the stages the target needs.
frontend::BuildPlan plan_without_building(oci::Store* store, const SessionRequest& request,
                                          bool all_stages);

// The op graph of each platform without a store (base images are taken to set nothing), as
// `kiln build --dry-run` shows it. Throws like run() does for planning errors.
std::vector<frontend::OpGraph> plan(const SessionRequest& request);

}  // namespace kiln::session
