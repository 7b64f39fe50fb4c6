// `kiln build` options: the whole build surface, parsed and validated before anything runs.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kiln/frontend/build_plan.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/runner/sandbox.hpp"
#include "kiln/session/session.hpp"

namespace kiln::cli {

// A "type=…,key=value,…" specification (--output, --cache-from, --cache-to).
struct TypedSpec {
  std::string type;
  std::map<std::string, std::string> attrs;

  std::optional<std::string> attr(const std::string& key) const;
};

// --secret id=ID,src=FILE | id=ID,env=VAR
struct SecretSpec {
  std::string id;
  std::string src;
  std::string env;
};

struct BuildCommandOptions {
  std::string context;  // the build context directory (positional)
  std::string file;     // -f; empty: CONTEXT/Containerfile, else CONTEXT/Dockerfile
  std::vector<std::string> tags;
  std::vector<std::pair<std::string, std::string>> build_args;
  std::optional<std::string> target;
  std::vector<oci::Platform> platforms;  // empty: the host platform
  bool all_platforms = false;            // --all-platforms: what the base images all offer
  bool no_cache = false;
  bool explain = false;  // --explain: why each step that ran missed the cache
  std::optional<std::chrono::seconds> cache_ttl;  // --cache-ttl: older cache entries are misses
  std::vector<std::string> no_cache_filter;
  // --pull[=always|missing|never|newer|true|false] (podman's policies; alone: always).
  session::SessionRequest::PullPolicy pull = session::SessionRequest::PullPolicy::kMissing;
  bool push = false;
  bool tls_verify = true;  // --tls-verify
  std::string cert_dir;    // --cert-dir: registry TLS files (oci::RegistryOptions::cert_dir)
  std::string creds;       // --creds USER[:PASSWORD]
  std::string authfile;    // --authfile
  std::vector<TypedSpec> outputs;
  std::vector<TypedSpec> cache_from;
  std::vector<TypedSpec> cache_to;
  std::vector<SecretSpec> secrets;
  std::map<std::string, std::string> ssh;  // --ssh ID[=SOCKET]: agent sockets by id
  std::string network = "default";         // default | none | host
  std::vector<std::pair<std::string, std::string>> labels;
  // buildah's image shaping: --unsetlabel, --env K=V / K- , --unsetenv, --omit-history,
  // --identity-label (adds io.kiln.version).
  std::vector<std::string> unset_labels;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unset_env;
  bool omit_history = false;
  bool squash = false, squash_all = false;  // --squash, --squash-all
  bool load = false;                        // --load: into docker's image store, else podman's
  bool identity_label = false;
  int compression_level = -1;  // --compression-level; -1: the algorithm's default
  // RUN's DNS and hosts files (podman): --dns IP|none, --dns-search, --dns-option, --no-hosts.
  std::vector<std::string> dns_servers, dns_search, dns_options;
  bool no_hosts = false;
  // RUN's process (podman): --cap-add, --cap-drop, --security-opt no-new-privileges and
  // seccomp=unconfined, --ulimit NAME=SOFT[:HARD], --shm-size.
  std::vector<std::string> cap_add, cap_drop;
  bool no_new_privs = false;
  bool no_seccomp = false;
  struct Ulimit {
    int resource = 0;
    uint64_t soft = 0, hard = 0;
  };
  std::vector<Ulimit> ulimits;
  std::string shm_size;
  // Registry requests: --retry N (how many times a failed one is tried again), --retry-delay.
  std::optional<int> retries;
  std::optional<std::chrono::milliseconds> retry_delay;
  // RUN: -v/--volume SRC:DST[:OPTIONS], host directories bound into every RUN step, outside the
  // layers. Options: ro, rw, z, Z (SELinux relabelling, which kiln does not do).
  struct Volume {
    std::string source, target;
    bool read_only = false;
  };
  std::vector<Volume> volumes;
  std::string logfile;  // --logfile: progress goes to this file instead of standard error
  // --device HOST[:CONTAINER[:PERMISSIONS]]: host device nodes bound into RUN steps' /dev.
  std::vector<Volume> devices;
  bool http_proxy = false;  // --http-proxy: the caller's proxy variables reach RUN steps
  // --timestamp SECONDS: the image's created time and every file time in its new layers.
  std::optional<int64_t> timestamp;
  std::string iidfile;
  std::string iidfile_raw;              // --iidfile-raw: the ID without "sha256:"
  std::optional<std::string> manifest;  // --manifest NAME: add to this manifest list
  // --memory, --memory-swap, --cpu-*, --cpuset-*, --cgroup-parent: RUN steps' cgroup limits.
  runner::ResourceLimits resources;
  // --from: the image the first FROM uses instead of the one it names.
  std::optional<std::string> from;
  // --source-date-epoch: as the SOURCE_DATE_EPOCH variable, and the build argument of that name.
  std::optional<int64_t> source_date_epoch;
  bool created_annotation = false;  // --created-annotation: org.opencontainers.image.created
  bool inherit_labels = true;       // --inherit-labels=false: stages start without labels
  std::string progress = "auto";    // auto | tty | plain | json
  std::string sign_key;
  std::string compression = "gzip";        // gzip | zstd | none
  std::vector<std::string> allow;          // --allow security.insecure|network.host
  std::string snapshotter = "auto";        // auto | overlay | copy
  std::string runtime;                     // --runtime runc|crun|PATH; empty: built-in sandbox
  std::string isolation = "auto";          // --isolation (or $KILN_ISOLATION)
  std::vector<std::string> runtime_flags;  // --runtime-flag, as "--FLAG[=VALUE]"
  std::vector<std::string> group_add;      // --group-add: RUN steps' extra groups
  std::optional<std::string> os_version;   // --os-version
  std::vector<std::string> mounts;         // --mount: added to every RUN
  std::vector<std::string> os_features;    // --os-feature NAME / NAME-
  std::string format = "oci";              // manifest media types: oci | docker
  // buildx's --call (--check is --call check): what to do instead of building.
  struct Call {
    std::string function = "build";  // build | check | outline | targets
    bool json = false;               // ,format=json
    bool ignore_status = false;      // ,ignorestatus=true: check findings do not fail the exit
  };
  Call call;
  // --sbom, --provenance, --attest, --provenance-include-arg, --sbom-output, --sbom-purl-output.
  struct Attest {
    bool sbom = false;
    bool cyclonedx = false;
    std::optional<std::string> provenance;  // "min" | "max"
    std::set<std::string> include_args;
    std::string sbom_output, sbom_purl_output;
    bool referrers = false;  // --attest-format referrers
  };
  Attest attest;
  std::optional<std::string> dry_run;  // --dry-run: the plan format, "text" or "json"
  // --add-host HOST:IP (or HOST=IP), in order: extra /etc/hosts lines for RUN steps.
  std::vector<std::pair<std::string, std::string>> add_hosts;
  // --annotation [manifest:|index:]K=V: on each platform's manifest, or on the index of a
  // multi-platform build.
  std::vector<std::pair<std::string, std::string>> manifest_annotations, index_annotations;
  std::string metadata_file;  // --metadata-file: JSON describing the result (buildx's keys)
  std::string ignorefile;     // --ignorefile: this ignore file instead of the context's
  size_t jobs = 0;            // --jobs: stages at once; 0: the number of CPUs
  // --build-context NAME=VALUE, validated: docker-image://REF, oci-layout://DIR[:TAG] or a
  // directory (made absolute).
  std::map<std::string, frontend::NamedContext> build_contexts;
  // The names among build_contexts whose value is still a session::ContextSource spec (a tar
  // archive, an http(s) tarball or a git URL): the build fetches them and puts the directory in.
  std::vector<std::string> fetched_contexts;
};

// Parses the arguments after `kiln build`. Throws UsageError for an unknown flag, a missing or
// malformed value, or a missing CONTEXT; returns nullopt after printing help for --help.
std::optional<BuildCommandOptions> parse_build_options(const std::vector<std::string>& args,
                                                       std::ostream& help_out);

// Parses "type=oci,dest=out"-style specs. `what` names the flag in errors.
TypedSpec parse_typed_spec(const std::string& spec, const std::string& what);

extern const char* const kBuildUsage;

}  // namespace kiln::cli
