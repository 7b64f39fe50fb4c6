#include "build_options.hpp"

#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <regex>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/duration.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/session/context_source.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace kiln::cli {

const char* const kBuildUsage =
    "kiln build [-t TAG]... [-f FILE] [--build-arg K=V]... [--target STAGE] [--platform P[,P]] "
    "[--no-cache] [--pull[=POLICY]] [-o type=oci|docker|registry|local|tar,dest=...] [--push] "
    "[--cache-from SPEC] [--cache-to SPEC] [--secret id=ID,src=FILE] [--ssh default|ID=SOCKET] "
    "[--network "
    "default|none|host] [--label K=V] [--iidfile FILE] [--progress auto|tty|plain|json|quiet] "
    "[--sign-key FILE] [--compression gzip|zstd|none] [--format oci|docker] "
    "[--allow security.insecure|network.host] [--snapshotter auto|overlay|copy] [--runtime "
    "runc|crun|PATH] "
    "[--add-host HOST:IP] [--annotation K=V] [--metadata-file FILE] [--ignorefile FILE] "
    "[--jobs N] [-q] [--build-context NAME=VALUE] [--dry-run [--plan-format text|json]] [CONTEXT]";

namespace {

[[noreturn]] void usage(const std::string& message) {
  throw UsageError(message, kBuildUsage);
}

std::pair<std::string, std::string> key_value(const std::string& text, const std::string& what) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    usage(what + " " + quote(text) + ": expected KEY=VALUE");
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

TypedSpec parse_output(const std::string& spec) {
  if (spec.find('=') == std::string::npos) {
    // Docker's shorthand: a path means the rootfs into that directory, "-" a tar on stdout.
    if (spec == "-")
      return {"tar", {{"dest", "-"}}};
    return {"local", {{"dest", spec}}};
  }
  TypedSpec out = parse_typed_spec(spec, "--output");
  static const std::vector<std::string> kTypes = {"oci",   "docker", "registry",
                                                  "local", "tar",    "image"};
  if (std::find(kTypes.begin(), kTypes.end(), out.type) == kTypes.end()) {
    usage("--output type " + quote(out.type) +
          " is not one of oci, docker, registry, local, tar, image");
  }
  bool needs_dest =
      out.type == "oci" || out.type == "docker" || out.type == "local" || out.type == "tar";
  if (needs_dest && !out.attr("dest"))
    usage("--output type=" + out.type + " needs dest=PATH");
  if (out.type == "registry" || out.type == "image") {
    for (const char* key : {"push", "push-by-digest"}) {
      if (auto value = out.attr(key); value && *value != "true" && *value != "false")
        usage("--output type=" + out.type + ": " + key + " must be true or false, not " +
              quote(*value));
    }
    // buildx falls back to the tags, which a push by digest refuses when they have one.
    if (out.attr("push-by-digest") == "true" && !out.attr("name")) {
      usage("--output type=" + out.type +
            ",push-by-digest=true needs name=REPOSITORY: the repository the image is pushed "
            "to by digest");
    }
  }
  return out;
}

TypedSpec parse_cache(const std::string& spec, const std::string& what, bool exporting) {
  if (spec.find('=') == std::string::npos)
    return {"registry", {{"ref", spec}}};
  TypedSpec cache = parse_typed_spec(spec, what);
  if (cache.type == "registry") {
    if (!cache.attr("ref"))
      usage(what + " type=registry needs ref=REFERENCE");
  } else if (cache.type == "local") {
    const char* key = exporting ? "dest" : "src";
    if (!cache.attr(key))
      usage(what + " type=local needs " + key + "=DIR");
  } else {
    usage(what + " type " + quote(cache.type) + " is not one of registry, local");
  }
  if (auto mode = cache.attr("mode"); mode && *mode != "min" && *mode != "max") {
    usage(what + " mode must be min or max, not " + quote(*mode));
  }
  return cache;
}

SecretSpec parse_secret(const std::string& spec) {
  SecretSpec secret;
  for (const std::string& field : split_unquoted(spec, ',')) {
    auto [key, value] = key_value(field, "--secret");
    if (key == "id") {
      secret.id = value;
    } else if (key == "src" || key == "source") {
      secret.src = value;
    } else if (key == "env") {
      secret.env = value;
    } else if (key == "type") {
      if (value != "file" && value != "env")
        usage("--secret type must be file or env");
    } else {
      usage("--secret: unknown key " + quote(key) + " (use id, src, env, type)");
    }
  }
  if (secret.id.empty())
    usage("--secret " + quote(spec) + ": id=ID is required");
  if (secret.src.empty() && secret.env.empty()) {
    usage("--secret " + quote(spec) + ": give src=FILE or env=VARIABLE");
  }
  return secret;
}

// --ulimit NAME=SOFT[:HARD] as docker and podman take it; -1 or "unlimited" is no limit.
BuildCommandOptions::Ulimit parse_ulimit(const std::string& spec) {
  static const std::map<std::string, int> kResources = {
      {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
      {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
      {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
      {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
      {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
      {"stack", RLIMIT_STACK}};
  size_t eq = spec.find('=');
  auto resource = kResources.find(spec.substr(0, eq));
  if (eq == std::string::npos || resource == kResources.end()) {
    usage("--ulimit " + quote(spec) +
          ": expected NAME=SOFT[:HARD] with NAME one of as, core, cpu, data, fsize, locks, "
          "memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack");
  }
  auto number = [&](const std::string& text) -> uint64_t {
    if (text == "-1" || text == "unlimited")
      return RLIM_INFINITY;
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
      usage("--ulimit " + quote(spec) + ": " + quote(text) + " is not a number");
    return value;
  };
  std::string values = spec.substr(eq + 1);
  size_t colon = values.find(':');
  BuildCommandOptions::Ulimit limit;
  limit.resource = resource->second;
  limit.soft = number(values.substr(0, colon));
  limit.hard = colon == std::string::npos ? limit.soft : number(values.substr(colon + 1));
  if (limit.soft > limit.hard)
    usage("--ulimit " + quote(spec) + ": the soft limit is above the hard limit");
  return limit;
}

// -v/--volume SRC:DST[:OPTIONS] as buildah takes it for RUN steps.
BuildCommandOptions::Volume parse_volume(const std::string& spec) {
  std::vector<std::string> parts = split(spec, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    usage("--volume " + quote(spec) + ": expected SRC:DST[:OPTIONS]");
  BuildCommandOptions::Volume v;
  std::error_code ec;
  v.source = fs::absolute(parts[0], ec).lexically_normal().string();
  if (!fs::is_directory(v.source) && !fs::is_regular_file(v.source))
    usage("--volume " + quote(spec) + ": " + v.source + " does not exist");
  if (parts[1].front() != '/')
    usage("--volume " + quote(spec) + ": the destination must be an absolute path");
  v.target = parts[1];
  if (parts.size() == 3) {
    for (const std::string& option : split(parts[2], ',')) {
      if (option == "ro")
        v.read_only = true;
      else if (option == "rw" || option == "z" || option == "Z")
        continue;  // z/Z: SELinux relabelling, which kiln (applying no labels) does not need
      else
        usage("--volume " + quote(spec) + ": unknown option " + quote(option) +
              " (ro, rw, z and Z are supported)");
    }
  }
  return v;
}

bool is_ip_address(const std::string& ip) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, ip.c_str(), buffer) == 1 ||
         ::inet_pton(AF_INET6, ip.c_str(), buffer) == 1;
}

// --add-host HOST:IP (docker; an IPv6 address keeps its colons) or HOST=IP (buildx).
std::pair<std::string, std::string> parse_add_host(const std::string& spec) {
  size_t sep = spec.find('=');
  if (sep == std::string::npos)
    sep = spec.find(':');
  if (sep == std::string::npos || sep == 0 || sep + 1 == spec.size())
    usage("--add-host " + quote(spec) + ": expected HOST:IP");
  std::string host = spec.substr(0, sep), ip = spec.substr(sep + 1);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']')
    ip = ip.substr(1, ip.size() - 2);
  if (!is_ip_address(ip)) {
    usage("--add-host " + quote(spec) + ": " + quote(ip) +
          " is not an IP address (host-gateway is not supported)");
  }
  if (host.find_first_of(" \t\n#") != std::string::npos)
    usage("--add-host " + quote(spec) + ": bad host name " + quote(host));
  return {host, ip};
}

// --build-context NAME=VALUE, as buildx and buildah take it.
struct ParsedContext {
  std::string name;
  frontend::NamedContext context;
  bool fetch = false;  // context.value is a ContextSource spec to materialize
};

ParsedContext parse_build_context(const std::string& spec) {
  auto [name, value] = key_value(spec, "--build-context");
  frontend::NamedContext context;
  if (starts_with(value, "docker-image://")) {
    context.value = value.substr(15);
    if (!oci::try_parse_reference(context.value))
      usage("--build-context " + quote(spec) + ": " + quote(context.value) +
            " is no image reference");
  } else if (starts_with(value, "oci-layout://")) {
    std::string layout = value.substr(13);
    if (layout.find('@') != std::string::npos)
      usage("--build-context " + quote(spec) + ": select the layout's image by tag (DIR:TAG)");
    context.value = "oci:" + layout;
  } else if (session::ContextSource::is_git_url(value) || starts_with(value, "http://") ||
             starts_with(value, "https://")) {
    // Fetched when the build starts (build_command), like the main context.
    context.local = true;
    context.value = value;
    return {name, context, true};
  } else if (value.find("://") != std::string::npos || starts_with(value, "target:")) {
    usage("--build-context " + quote(spec) +
          ": kiln takes a directory, a tar archive, an http(s) tarball, a git URL, "
          "docker-image://REF or oci-layout://DIR[:TAG]");
  } else {
    std::error_code ec;
    fs::path dir = fs::absolute(value, ec);
    if (!ec && fs::is_regular_file(dir, ec)) {
      context.local = true;
      context.value = dir.string();
      return {name, context, true};  // a tar archive, unpacked when the build starts
    }
    if (ec || !fs::is_directory(dir, ec))
      usage("--build-context " + quote(spec) + ": " + quote(value) +
            " is no directory, tar archive, URL or image");
    context.local = true;
    context.value = dir.lexically_normal().string();
    while (context.value.size() > 1 && context.value.back() == '/')
      context.value.pop_back();
  }
  return {name, context, false};
}

// --ssh default | ID=SOCKET: an SSH agent's socket (default: $SSH_AUTH_SOCK).
std::pair<std::string, std::string> parse_ssh(const std::string& spec) {
  size_t eq = spec.find('=');
  std::string id = spec.substr(0, eq);
  std::string socket = eq == std::string::npos ? "" : spec.substr(eq + 1);
  if (id.empty())
    usage("--ssh " + quote(spec) + ": expected ID[=SOCKET]");
  if (socket.empty()) {
    const char* agent = std::getenv("SSH_AUTH_SOCK");
    if (!agent || !*agent)
      usage("--ssh " + id + ": SSH_AUTH_SOCK is not set; start ssh-agent or give " + id +
            "=SOCKET");
    socket = agent;
  }
  struct stat st {};
  if (socket.find(',') != std::string::npos || ::stat(socket.c_str(), &st) != 0 ||
      !S_ISSOCK(st.st_mode)) {
    usage("--ssh " + quote(spec) + ": " + quote(socket) +
          " is not an SSH agent socket (kiln forwards agents; load key files with ssh-add)");
  }
  return {id, socket};
}

// Flags of buildah build, podman build or docker buildx build that kiln refuses, each with why:
// refused by name rather than "unrecognised", so a script ported from those tools learns what
// to change. README's compatibility table lists them (tests/cli_compat checks it).
struct RefusedFlag {
  const char* name;
  bool takes_value;
  const char* reason;
};

constexpr const char* kNoIntermediateImages =
    "kiln keeps no intermediate images (its cache is content-addressed steps)";
constexpr const char* kOwnSbom =
    "kiln reads the image's package databases itself (no scanner image); --sbom and "
    "--sbom-output take its SBOM";
constexpr const char* kNoUsernsMaps =
    "kiln maps RUN's user namespace from /etc/subuid and /etc/subgid itself; explicit maps are "
    "not supported";

constexpr RefusedFlag kRefusedFlags[] = {
    {"builder", true, "kiln has no builder instances: it builds in its own process"},
    {"cpp-flag", true, "kiln does not run Containerfile.in files through cpp"},
    {"cw", true, "kiln does not make confidential-workload (krun) images"},
    {"decryption-key", true, "kiln does not decrypt encrypted (ocicrypt) base images"},
    {"force-compression", false,
     "kiln does not recompress base image layers; the layers it makes use --compression-format"},
    {"hooks-dir", true, "kiln runs no OCI hooks in RUN steps"},
    {"layer-label", true, kNoIntermediateImages},
    {"logsplit", false, "--logfile takes every platform's output in one file"},
    {"policy", true, "kiln does not evaluate source policies"},
    {"resource", true,
     "buildx's per-step resource syntax is not taken: use --memory, --cpu-quota, --cpuset-cpus"},
    {"save-stages", false, kNoIntermediateImages},
    {"sbom-image-output", true, kOwnSbom},
    {"sbom-image-purl-output", true, kOwnSbom},
    {"sbom-merge-strategy", true, kOwnSbom},
    {"sbom-scanner-command", true, kOwnSbom},
    {"sbom-scanner-image", true, kOwnSbom},
    {"sign-by", true, "kiln makes cosign-compatible signatures, not GPG ones: use --sign-key"},
    {"source-policy-file", true, "kiln does not evaluate source policies"},
    {"stage-labels", false, kNoIntermediateImages},
    {"stdin", false, "RUN steps get no standard input: kiln builds are not interactive"},
    {"userns-gid-map", true, kNoUsernsMaps},
    {"userns-gid-map-group", true, kNoUsernsMaps},
    {"userns-uid-map", true, kNoUsernsMaps},
    {"userns-uid-map-user", true, kNoUsernsMaps},
};

// A size as docker's RAMInBytes takes it: "512m", "2g", "1.5G", "64mb", "1024" (bytes); with
// `minus_one`, "-1" (unlimited) too.
int64_t parse_bytes(const std::string& text, const std::string& flag, bool minus_one) {
  if (minus_one && text == "-1")
    return -1;
  static const std::regex kSize("([0-9]+(?:\\.[0-9]+)?) ?([bkmgtpBKMGTP]?)[bB]?");
  std::smatch m;
  if (!std::regex_match(text, m, kSize))
    usage(flag + " " + quote(text) + ": expected a size such as 512m or 2g");
  double n = std::stod(m[1].str());
  switch (std::tolower(m[2].str().empty() ? 'b' : m[2].str()[0])) {
    case 'p':
      n *= 1024;
      [[fallthrough]];
    case 't':
      n *= 1024;
      [[fallthrough]];
    case 'g':
      n *= 1024;
      [[fallthrough]];
    case 'm':
      n *= 1024;
      [[fallthrough]];
    case 'k':
      n *= 1024;
      break;
    default:
      break;
  }
  if (n < 4096 || n > 9.2e18)
    usage(flag + " " + quote(text) + ": out of range (at least 4k)");
  return static_cast<int64_t>(n);
}

void require_one_of(const std::string& value, const std::string& flag,
                    std::initializer_list<const char*> allowed) {
  std::vector<std::string> names;
  for (const char* a : allowed) {
    if (value == a)
      return;
    names.emplace_back(a);
  }
  usage(flag + " " + quote(value) + " is not one of " + join(names, ", "));
}

}  // namespace

std::optional<std::string> TypedSpec::attr(const std::string& key) const {
  auto it = attrs.find(key);
  if (it == attrs.end())
    return std::nullopt;
  return it->second;
}

TypedSpec parse_typed_spec(const std::string& spec, const std::string& what) {
  TypedSpec out;
  for (const std::string& field : split_unquoted(spec, ',')) {
    auto [key, value] = key_value(field, what);
    if (key == "type") {
      out.type = value;
    } else {
      out.attrs[key] = value;
    }
  }
  if (out.type.empty())
    usage(what + " " + quote(spec) + ": type=TYPE is required");
  return out;
}

std::optional<BuildCommandOptions> parse_build_options(const std::vector<std::string>& args,
                                                       std::ostream& help_out) {
  std::vector<std::string> tags, build_args, platforms, outputs, cache_from, cache_to, secrets,
      labels, no_cache_filter, add_hosts, annotations, build_contexts, ssh, unset_labels, envs,
      unset_env, dns, dns_search, dns_option, cap_add, cap_drop, security_opts, ulimits, volumes,
      devices;
  std::string shm_size, logfile, retry_delay, os, arch, variant, http_proxy, isolation, userns;
  int retries = -1;
  std::string no_hosts;
  std::string squash, squash_all, load;
  std::string omit_history, identity_label, disable_compression, compression_format;
  int compression_level = -1;
  long long timestamp = -1;
  std::vector<std::string> build_arg_files, unset_annotations, runtime_flags, group_add,
      os_features, mounts, attest, provenance_include_args;
  std::string sbom, provenance, sbom_output, sbom_purl_output, attest_format;
  std::string iidfile_raw, rewrite_timestamp, compress, content_trust, created_annotation,
      inherit_labels, inherit_annotations, skip_unused_stages, compat_volumes, ipc, pid, uts,
      cgroupns, debug, from, cache_ttl, all_platforms, manifest, memory, memory_swap, cpu_shares,
      cpu_period, cpu_quota, cpuset_cpus, cpuset_mems, cgroup_parent, no_hostname, os_version;
  long long source_date_epoch = -1;
  std::string file, target, network, iidfile, progress, sign_key, plan_format, call, context,
      compression, pull, format, snapshotter, runtime, tls_verify, creds, authfile, cert_dir,
      metadata_file, ignorefile, layers;
  long long jobs = 0;
  std::vector<std::string> allow;
  po::options_description visible("Options");
  // clang-format off
  visible.add_options()
      ("help,h", "print this help")
      ("tag,t", po::value(&tags), "name the image NAME[:TAG] (repeatable)")
      ("file,f", po::value(&file),
       "the Containerfile (default: CONTEXT/Containerfile, then CONTEXT/Dockerfile; '-' reads "
       "standard input)")
      ("build-arg", po::value(&build_args),
       "set a build argument K=V, or K to take it from the environment (repeatable)")
      ("target", po::value(&target), "build this stage and what it needs, not the last stage")
      ("platform", po::value(&platforms), "target platforms, e.g. linux/amd64,linux/arm64")
      ("memory,m", po::value(&memory), "limit RUN steps' memory, e.g. 512m or 2g (a cgroup)")
      ("memory-swap", po::value(&memory_swap),
       "limit RUN steps' memory plus swap; -1: unlimited swap")
      ("cpu-shares,c", po::value(&cpu_shares), "RUN steps' relative CPU weight (1024: normal)")
      ("cpu-period", po::value(&cpu_period), "the CFS period for --cpu-quota, microseconds")
      ("cpu-quota", po::value(&cpu_quota),
       "the CPU time RUN steps may use each --cpu-period, microseconds")
      ("cpuset-cpus", po::value(&cpuset_cpus), "the CPUs RUN steps may use, e.g. 0-3,6")
      ("cpuset-mems", po::value(&cpuset_mems), "the memory nodes RUN steps may use")
      ("cgroup-parent", po::value(&cgroup_parent),
       "the cgroup RUN steps' cgroups are made in (default: kiln's own)")
      ("sbom", po::value(&sbom)->implicit_value("true"),
       "attach an SBOM attestation (SPDX 2.3; cyclonedx: CycloneDX 1.5) read from the image's "
       "package databases; buildx's generator=... and buildah's presets are taken")
      ("sbom-output", po::value(&sbom_output), "also write the SBOM to this file (buildah)")
      ("sbom-purl-output", po::value(&sbom_purl_output),
       "also write the package URLs the SBOM lists to this file, one a line (buildah)")
      ("provenance", po::value(&provenance)->implicit_value("true"),
       "attach SLSA v1 provenance: true, false, mode=min or mode=max (the op graph, step times)")
      ("attest", po::value(&attest),
       "buildx's attestations: type=sbom[,generator=...] or type=provenance[,mode=min|max], "
       "[,disabled=true]")
      ("attest-format", po::value(&attest_format)->default_value("index"),
       "index: attestation manifests in the image index (BuildKit's); referrers: OCI 1.1 "
       "artifacts with the image as subject (a registry's referrers API, or its fallback tag)")
      ("provenance-include-arg", po::value(&provenance_include_args),
       "record this build arg's value in provenance even though its name looks like a "
       "credential (those are redacted)")
      ("mount", po::value(&mounts),
       "a RUN --mount value added to every RUN step (type=cache|bind|tmpfs|secret|ssh,...)")
      ("os-version", po::value(&os_version), "the image config's os.version")
      ("os-feature", po::value(&os_features),
       "add a required OS feature to the config's os.features; NAME- removes one")
      ("group-add", po::value(&group_add),
       "a supplementary group (name in the image's /etc/group, or number) for RUN steps")
      ("runtime-flag", po::value(&runtime_flags),
       "a global flag for the --runtime, without its dashes (e.g. debug, log-format=json)")
      ("no-hostname", po::value(&no_hostname)->implicit_value("true"),
       "kiln never writes /etc/hostname into RUN steps (as BuildKit): accepted")
      ("manifest", po::value(&manifest),
       "add the image (each platform's) to the manifest list NAME in the store, creating it")
      ("all-platforms", po::value(&all_platforms)->implicit_value("true"),
       "build for every platform the base images all offer (buildah)")
      ("os", po::value(&os), "the target OS (buildah; with --arch and --variant, one platform)")
      ("arch", po::value(&arch), "the target architecture, e.g. arm64 (buildah)")
      ("variant", po::value(&variant), "the target architecture variant, e.g. v7 (buildah)")
      ("no-cache", po::bool_switch(), "do not use the build cache")
      ("explain", po::bool_switch(),
       "after the build, say for every step that ran why it missed the cache")
      ("no-cache-filter", po::value(&no_cache_filter), "do not use the cache for these stages")
      ("pull", po::value(&pull)->implicit_value("true"),
       "when to pull base images: always (alone, or true), missing (the default, or false), "
       "newer (always, but the local image when the registry cannot be reached), never")
      ("output,o", po::value(&outputs),
       "where the result goes: type=oci|docker|local|tar,dest=PATH, "
       "type=registry,name=NAME[,push-by-digest=true] (repeatable)")
      ("push", po::bool_switch(), "push the image to the registry named by its tag")
      ("cache-from", po::value(&cache_from),
       "import build cache: type=registry,ref=REF or type=local,src=DIR")
      ("cache-to", po::value(&cache_to),
       "export build cache: type=registry,ref=REF[,mode=max] or type=local,dest=DIR")
      ("secret", po::value(&secrets),
       "expose a secret to RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR")
      ("ssh", po::value(&ssh),
       "forward an SSH agent to RUN --mount=type=ssh: default ($SSH_AUTH_SOCK) or ID=SOCKET")
      ("network", po::value(&network)->default_value("default"),
       "RUN network: default, none, host")
      ("label", po::value(&labels), "add a label K=V to the image (repeatable)")
      ("unsetlabel", po::value(&unset_labels),
       "remove a label the image would have (from its base or a LABEL; repeatable)")
      ("env", po::value(&envs),
       "set K=V in the image's environment, or remove K with K- (buildah; repeatable)")
      ("unsetenv", po::value(&unset_env),
       "remove a variable from the image's environment (repeatable)")
      ("load", po::value(&load)->implicit_value("true"),
       "load the image into docker (docker load), or podman when there is no docker (buildx)")
      ("squash", po::value(&squash)->implicit_value("true"),
       "make the layers the build adds one layer, on top of the base image's (buildah)")
      ("squash-all", po::value(&squash_all)->implicit_value("true"),
       "make the whole image one layer (buildah; podman's --squash-all)")
      ("omit-history", po::value(&omit_history)->implicit_value("true"),
       "write the image config without its history")
      ("identity-label", po::value(&identity_label)->implicit_value("true"),
       "label the image io.kiln.version=VERSION (buildah's io.buildah.version; default false)")
      ("disable-compression,D", po::value(&disable_compression)->implicit_value("true"),
       "write uncompressed layers (same as --compression none)")
      ("compression-format", po::value(&compression_format),
       "podman's name for --compression: gzip or zstd")
      ("dns", po::value(&dns),
       "a DNS server for RUN steps' /etc/resolv.conf (repeatable; none: no resolv.conf)")
      ("dns-search", po::value(&dns_search), "a DNS search domain for RUN steps (repeatable)")
      ("dns-option", po::value(&dns_option), "a resolv.conf option for RUN steps (repeatable)")
      ("cap-add", po::value(&cap_add), "add a capability to RUN steps (repeatable; ALL: every one)")
      ("cap-drop", po::value(&cap_drop),
       "drop a capability from RUN steps (repeatable; ALL: every one)")
      ("security-opt", po::value(&security_opts),
       "RUN security: no-new-privileges, seccomp=unconfined, label=disable, apparmor=unconfined")
      ("ulimit", po::value(&ulimits), "a resource limit for RUN steps: NAME=SOFT[:HARD] "
       "(nofile, nproc, core, stack, ...; -1 or unlimited)")
      ("shm-size", po::value(&shm_size), "the size of RUN steps' /dev/shm (default 64m)")
      ("volume,v", po::value(&volumes),
       "bind a host directory into every RUN step: SRC:DST[:ro|rw|z|Z] (kept out of the layers; "
       "repeatable)")
      ("logfile", po::value(&logfile), "write the progress to FILE instead of standard error")
      ("device", po::value(&devices),
       "bind a host device into RUN steps: HOST[:CONTAINER[:rwm]] (repeatable)")
      ("http-proxy", po::value(&http_proxy)->implicit_value("true"),
       "pass the caller's http_proxy, https_proxy, ftp_proxy and no_proxy to RUN steps")
      ("isolation", po::value(&isolation),
       "how RUN steps are isolated: auto (default, or $KILN_ISOLATION; probes what this "
       "environment allows), oci or rootless (kiln's namespace sandbox), chroot (no namespaces: "
       "for unprivileged containers)")
      ("userns", po::value(&userns),
       "RUN's user namespace: host or auto (kiln always uses one mapping the caller's ids)")
      ("retry", po::value(&retries), "how many times a failed registry request is tried again "
       "(default 4)")
      ("retry-delay", po::value(&retry_delay),
       "the wait before each retry, e.g. 2s or 500ms (default: growing from 250ms)")
      ("no-hosts", po::value(&no_hosts)->implicit_value("true"),
       "do not generate /etc/hosts for RUN steps: they see the image's own")
      ("timestamp", po::value(&timestamp),
       "seconds since 1970: the image's created time and the time of every file in its new "
       "layers, for reproducible images (buildah; SOURCE_DATE_EPOCH only clamps later times)")
      ("compression-level", po::value(&compression_level),
       "gzip 0-9 or zstd 1-22 (default: gzip 6, zstd 3)")
      ("iidfile", po::value(&iidfile), "write the image ID to FILE")
      ("progress", po::value(&progress)->default_value("auto"),
       "progress output: auto, tty, plain, json, quiet")
      ("sign-key", po::value(&sign_key), "sign the pushed image with this private key")
      ("tls-verify", po::value(&tls_verify)->default_value("true")->implicit_value("true"),
       "verify registries' TLS certificates (--tls-verify=false also allows plain HTTP)")
      ("creds", po::value(&creds), "registry credentials USER[:PASSWORD]")
      ("authfile", po::value(&authfile), "registry credentials file (default: the usual auth.json)")
      ("cert-dir", po::value(&cert_dir),
       "registry TLS files: *.crt CAs, a *.cert and *.key client certificate "
       "(default: /etc/containers/certs.d/HOST)")
      ("compression", po::value(&compression)->default_value("gzip"),
       "layer compression: gzip, zstd, none")
      ("format", po::value(&format)->default_value("oci"),
       "manifest and config media types: oci or docker")
      ("allow", po::value(&allow),
       "allow an entitlement: security.insecure (RUN --security=insecure), network.host (RUN "
       "--network=host)")
      ("runtime", po::value(&runtime),
       "run RUN steps with this OCI runtime (runc, crun or a path) instead of the built-in sandbox")
      ("snapshotter", po::value(&snapshotter)->default_value("auto"),
       "how RUN steps see and change the filesystem: auto, overlay, copy")
      ("build-context", po::value(&build_contexts),
       "a named context NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG] for FROM NAME, "
       "COPY --from=NAME and RUN --mount from=NAME (repeatable)")
      ("add-host", po::value(&add_hosts),
       "add HOST:IP to /etc/hosts in RUN steps (repeatable)")
      ("annotation", po::value(&annotations),
       "add an annotation K=V to the manifest (index:K=V: to the index of a multi-platform "
       "build; repeatable)")
      ("metadata-file", po::value(&metadata_file),
       "write the result's digests and names to FILE as JSON")
      ("ignorefile", po::value(&ignorefile),
       "read ignore rules from FILE instead of the context's .containerignore/.dockerignore")
      ("jobs", po::value(&jobs), "how many stages may run at once (default: the number of CPUs)")
      ("quiet,q", po::bool_switch(), "print only the image ID (same as --progress quiet)")
      ("layers", po::value(&layers)->implicit_value("true"),
       "buildah's --layers: kiln always caches steps; --layers=false is --no-cache")
      ("rm", po::value<std::string>()->implicit_value("true"),
       "accepted for compatibility: kiln leaves no intermediate containers")
      ("force-rm", po::value<std::string>()->implicit_value("true"),
       "accepted for compatibility: kiln leaves no intermediate containers")
      ("cache-ttl", po::value(&cache_ttl),
       "use only cache entries made less than DURATION ago (e.g. 1h, 30m; 0: --no-cache)")
      ("build-arg-file", po::value(&build_arg_files),
       "read build arguments from FILE: NAME=VALUE lines; # comments and blank lines skipped "
       "(--build-arg wins)")
      ("from", po::value(&from), "use this image instead of the one the first FROM names")
      ("iidfile-raw", po::value(&iidfile_raw), "write the image ID to FILE without sha256:")
      ("source-date-epoch", po::value(&source_date_epoch),
       "the image's created time and the SOURCE_DATE_EPOCH build argument; new files' times "
       "are clamped to it (as the SOURCE_DATE_EPOCH variable)")
      ("rewrite-timestamp", po::value(&rewrite_timestamp)->implicit_value("true"),
       "clamp new layers' file times to --source-date-epoch (kiln always does when it is set)")
      ("created-annotation", po::value(&created_annotation)->implicit_value("true"),
       "add org.opencontainers.image.created to the manifest (default false)")
      ("inherit-labels", po::value(&inherit_labels)->implicit_value("true"),
       "keep the base image's and base stage's labels (default true)")
      ("inherit-annotations", po::value(&inherit_annotations)->implicit_value("true"),
       "false only: kiln never carries a base image's manifest annotations over")
      ("unsetannotation", po::value(&unset_annotations),
       "an annotation not to inherit from the base (none are: accepted, nothing to remove)")
      ("skip-unused-stages", po::value(&skip_unused_stages)->implicit_value("true"),
       "true only: kiln builds only the stages the target needs")
      ("compat-volumes", po::value(&compat_volumes)->implicit_value("true"),
       "false only: RUN's changes under a VOLUME are kept, as in BuildKit")
      ("ipc", po::value(&ipc), "RUN's IPC namespace: private (the only one kiln makes)")
      ("pid", po::value(&pid), "RUN's PID namespace: private (the only one kiln makes)")
      ("uts", po::value(&uts), "RUN's UTS namespace: private (the only one kiln makes)")
      ("cgroupns", po::value(&cgroupns), "RUN's cgroup namespace: host (kiln makes none)")
      ("compress", po::value(&compress)->implicit_value("true"),
       "accepted and ignored, as buildah, podman and buildx do: the context is never sent")
      ("disable-content-trust", po::value(&content_trust)->implicit_value("true"),
       "accepted and ignored, as buildah and podman do")
      ("debug", po::value(&debug)->implicit_value("true"),
       "buildx's --debug: plain progress, every step's output")
      ("call", po::value(&call),
       "buildx's --call: check, outline, targets or build (the default), with ,format=json and "
       ",ignorestatus=true")
      ("print", po::value(&call), "an older name of --call")
      ("check", po::bool_switch(), "run the build checks and build nothing (--call check)")
      ("dry-run", po::bool_switch(), "print the planned build graph and run nothing")
      ("plan-format", po::value(&plan_format)->default_value("text"),
       "with --dry-run: text or json");
  // clang-format on
  po::options_description refused;
  for (const RefusedFlag& f : kRefusedFlags) {
    // buildah's short forms: -c is --cpu-shares, -m is --memory.
    if (f.takes_value)
      refused.add_options()(f.name, po::value<std::string>());
    else
      refused.add_options()(f.name, po::value<std::string>()->implicit_value("true"));
  }
  po::options_description known;
  known.add(visible).add(refused);
  // buildah writes its scanner preset as the next word (`--sbom syft`); buildx's optional value
  // needs `--sbom=...`. A preset name right after --sbom is taken as its value.
  std::vector<std::string> words = args;
  static const std::set<std::string> kSbomPresets = {"syft",  "syft-spdx",  "syft-cyclonedx",
                                                     "trivy", "trivy-spdx", "trivy-cyclonedx"};
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "--sbom" && kSbomPresets.count(words[i + 1])) {
      words[i] += "=" + words[i + 1];
      words.erase(words.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  po::variables_map vm = parse_arguments(
      words, known,
      {"context", po::value(&context), 1, "too many arguments: give exactly one CONTEXT directory"},
      kBuildUsage);
  if (vm.count("help")) {
    print_command_help(help_out, kBuildUsage, "Build an image from a Containerfile.", visible);
    return std::nullopt;
  }
  for (const RefusedFlag& f : kRefusedFlags) {
    if (vm.count(f.name))
      usage(std::string("--") + f.name + " is not supported: " + f.reason);
  }
  if (context.empty())
    context = ".";  // as podman build: the current directory

  auto flag_bool = [&](const std::string& value, const char* flag) {
    require_one_of(value, flag, {"true", "false"});
    return value == "true";
  };
  BuildCommandOptions opts;
  opts.context = context;
  opts.file = file;
  opts.tags = tags;
  // --build-arg-file first, so that --build-arg wins for the same name.
  for (const std::string& path : build_arg_files) {
    std::string text;
    try {
      text = read_file(path);
    } catch (const Error& e) {
      usage(std::string("--build-arg-file: ") + e.what());
    }
    size_t line_number = 0;
    for (std::string line : split(text, '\n')) {
      ++line_number;
      line = trim(line);
      if (line.empty() || line[0] == '#')
        continue;
      size_t eq = line.find('=');
      if (eq == 0 || eq == std::string::npos) {
        usage("--build-arg-file " + path + ":" + std::to_string(line_number) +
              ": expected NAME=VALUE, not " + quote(line));
      }
      opts.build_args.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    }
  }
  for (const std::string& arg : build_args) {
    size_t eq = arg.find('=');
    if (eq == 0)
      usage("--build-arg " + quote(arg) + ": the name is empty");
    if (eq != std::string::npos) {
      opts.build_args.emplace_back(arg.substr(0, eq), arg.substr(eq + 1));
    } else if (const char* value = std::getenv(arg.c_str())) {
      opts.build_args.emplace_back(arg, value);  // docker's rule: K alone reads the environment
    }
  }
  if (vm.count("target")) {
    if (target.empty())
      usage("--target needs a stage name");
    opts.target = target;
  }
  for (const std::string& list : platforms) {
    for (const std::string& spec : split(list, ',')) {
      try {
        opts.platforms.push_back(oci::parse_platform(trim(spec)));
      } catch (const Error& e) {
        usage(e.what());
      }
    }
  }
  if (vm.count("os") || vm.count("arch") || vm.count("variant")) {
    if (!opts.platforms.empty())
      usage("--os, --arch and --variant describe one platform: give them or --platform, not both");
    oci::Platform host = oci::host_platform();
    std::string spec =
        (vm.count("os") ? os : host.os) + "/" + (vm.count("arch") ? arch : host.architecture);
    if (vm.count("variant"))
      spec += "/" + variant;
    else if (!vm.count("arch") && !host.variant.empty())
      spec += "/" + host.variant;
    try {
      opts.platforms.push_back(oci::parse_platform(spec));
    } catch (const Error& e) {
      usage(e.what());
    }
  }
  if (vm.count("all-platforms") && flag_bool(all_platforms, "--all-platforms")) {
    if (!opts.platforms.empty())
      usage("--all-platforms finds the platforms itself: give it or --platform/--os/--arch");
    opts.all_platforms = true;
  }
  opts.no_cache = vm["no-cache"].as<bool>();
  opts.explain = vm["explain"].as<bool>();
  if (vm.count("layers")) {
    require_one_of(layers, "--layers", {"true", "false"});
    if (layers == "false")
      opts.no_cache = true;
  }
  for (const char* flag : {"rm", "force-rm"}) {
    if (vm.count(flag))
      require_one_of(vm[flag].as<std::string>(), std::string("--") + flag, {"true", "false"});
  }
  if (vm.count("cache-ttl")) {
    std::optional<int64_t> ttl = frontend::parse_go_duration(cache_ttl);
    if (!ttl || *ttl < 0)
      usage("--cache-ttl " + quote(cache_ttl) + ": expected a duration such as 1h, 30m or 90s");
    if (*ttl == 0)
      opts.no_cache = true;  // buildah: --cache-ttl=0 is --no-cache
    else
      opts.cache_ttl =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::nanoseconds(*ttl));
  }
  opts.no_cache_filter = no_cache_filter;
  using Policy = session::SessionRequest::PullPolicy;
  if (pull.empty() || pull == "missing" || pull == "false")
    opts.pull = Policy::kMissing;
  else if (pull == "always" || pull == "true")
    opts.pull = Policy::kAlways;
  else if (pull == "newer")
    opts.pull = Policy::kNewer;
  else if (pull == "never")
    opts.pull = Policy::kNever;
  else
    usage("--pull must be always, missing, never, newer, true or false, not " + quote(pull));
  opts.push = vm["push"].as<bool>();
  if (tls_verify != "true" && tls_verify != "false")
    usage("--tls-verify must be true or false, not " + quote(tls_verify));
  opts.tls_verify = tls_verify == "true";
  if (vm.count("cert-dir")) {
    std::error_code ec;
    if (!fs::is_directory(cert_dir, ec))
      usage("--cert-dir " + quote(cert_dir) + ": not a directory");
    opts.cert_dir = cert_dir;
  }
  opts.creds = creds;
  opts.authfile = authfile;
  for (const std::string& o : outputs)
    opts.outputs.push_back(parse_output(o));
  for (const std::string& c : cache_from) {
    opts.cache_from.push_back(parse_cache(c, "--cache-from", false));
  }
  for (const std::string& c : cache_to)
    opts.cache_to.push_back(parse_cache(c, "--cache-to", true));
  for (const std::string& s : secrets)
    opts.secrets.push_back(parse_secret(s));
  for (const std::string& s : ssh) {
    auto [id, socket] = parse_ssh(s);
    opts.ssh[id] = socket;
  }
  require_one_of(network, "--network", {"default", "none", "host"});
  opts.network = network;
  for (const std::string& l : labels)
    opts.labels.push_back(key_value(l, "--label"));
  for (const std::string& key : unset_labels) {
    if (key.empty())
      usage("--unsetlabel needs a label name");
    opts.unset_labels.push_back(key);
  }
  for (const std::string& e : envs) {
    if (e.size() > 1 && e.back() == '-' && e.find('=') == std::string::npos) {
      opts.unset_env.push_back(e.substr(0, e.size() - 1));  // buildah's K- unsets K
    } else if (e.find('=') != std::string::npos) {
      opts.env.push_back(key_value(e, "--env"));
    } else if (const char* value = std::getenv(e.c_str())) {
      opts.env.emplace_back(e, value);  // K alone takes the caller's value, as buildah
    } else {
      usage("--env " + quote(e) + ": expected K=V, K- or the name of a set variable");
    }
  }
  for (const std::string& key : unset_env) {
    if (key.empty() || key.find('=') != std::string::npos)
      usage("--unsetenv " + quote(key) + ": expected a variable name");
    opts.unset_env.push_back(key);
  }
  for (const std::string& list : dns) {
    for (const std::string& server : split(list, ',')) {
      if (server != "none" && !is_ip_address(server))
        usage("--dns " + quote(server) + ": expected an IP address or none");
      opts.dns_servers.push_back(server);
    }
  }
  for (const std::string& list : dns_search) {
    for (const std::string& domain : split(list, ','))
      opts.dns_search.push_back(domain);
  }
  opts.dns_options = dns_option;
  auto capability_list = [&](const std::vector<std::string>& lists, const char* flag) {
    std::vector<std::string> out;
    for (const std::string& list : lists) {
      for (const std::string& cap : split(list, ',')) {
        bool ok = !cap.empty() && std::all_of(cap.begin(), cap.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
        });
        if (!ok)
          usage(std::string(flag) + " " + quote(cap) + ": expected a capability name");
        out.push_back(cap);
      }
    }
    return out;
  };
  opts.cap_add = capability_list(cap_add, "--cap-add");
  opts.cap_drop = capability_list(cap_drop, "--cap-drop");
  for (const std::string& opt : security_opts) {
    std::string name = opt.substr(0, opt.find_first_of("=:"));
    std::string value = opt.size() > name.size() ? opt.substr(name.size() + 1) : "";
    if (name == "no-new-privileges" && (value.empty() || value == "true")) {
      opts.no_new_privs = true;
    } else if (name == "no-new-privileges" && value == "false") {
      opts.no_new_privs = false;
    } else if (name == "seccomp" && value == "unconfined") {
      opts.no_seccomp = true;
    } else if (name == "seccomp") {
      usage("--security-opt " + quote(opt) +
            ": kiln applies moby's default seccomp profile and reads no other; "
            "seccomp=unconfined turns it off");
    } else if ((name == "label" && value == "disable") ||
               (name == "apparmor" && value == "unconfined")) {
      // kiln applies no SELinux label and no AppArmor profile: already so.
    } else if (name == "label" || name == "apparmor") {
      usage("--security-opt " + quote(opt) + ": kiln applies no " +
            (name == "label" ? "SELinux labels" : "AppArmor profiles") + "; only " + name +
            (name == "label" ? "=disable" : "=unconfined") + " is accepted");
    } else {
      usage("--security-opt " + quote(opt) +
            ": expected no-new-privileges, seccomp=unconfined, label=disable or "
            "apparmor=unconfined");
    }
  }
  for (const std::string& spec : ulimits)
    opts.ulimits.push_back(parse_ulimit(spec));
  for (const std::string& spec : volumes)
    opts.volumes.push_back(parse_volume(spec));
  opts.logfile = logfile;
  for (const std::string& spec : devices) {
    std::vector<std::string> parts = split(spec, ':');
    if (parts.empty() || parts.size() > 3 || parts[0].empty() || parts[0].front() != '/')
      usage("--device " + quote(spec) + ": expected HOST[:CONTAINER[:PERMISSIONS]]");
    struct stat st {};
    if (::stat(parts[0].c_str(), &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
      usage("--device " + quote(spec) + ": " + parts[0] + " is not a device node");
    BuildCommandOptions::Volume d;
    d.source = parts[0];
    d.target = parts.size() >= 2 && !parts[1].empty() ? parts[1] : parts[0];
    if (d.target.front() != '/')
      usage("--device " + quote(spec) + ": the container path must be absolute");
    if (parts.size() == 3) {
      if (parts[2].empty() || parts[2].find_first_not_of("rwm") != std::string::npos)
        usage("--device " + quote(spec) + ": permissions are r, w and m");
      d.read_only = parts[2].find('w') == std::string::npos;
    }
    opts.devices.push_back(d);
  }
  if (vm.count("http-proxy"))
    opts.http_proxy = flag_bool(http_proxy, "--http-proxy");
  if (!vm.count("isolation")) {
    const char* env = std::getenv("KILN_ISOLATION");
    isolation = env ? env : "auto";
  }
  if (isolation != "auto" && isolation != "oci" && isolation != "rootless" &&
      isolation != "chroot") {
    usage("--isolation " + quote(isolation) + (vm.count("isolation") ? "" : " ($KILN_ISOLATION)") +
          ": expected auto, oci, rootless or chroot");
  }
  opts.isolation = isolation;
  if (vm.count("userns") && userns != "host" && userns != "auto" && userns != "") {
    usage("--userns " + quote(userns) +
          ": kiln's RUN steps always run in a user namespace that maps the caller's ids "
          "(host and auto are accepted)");
  }
  if (vm.count("retry")) {
    if (retries < 0 || retries > 100)
      usage("--retry " + std::to_string(retries) + ": expected 0 to 100");
    opts.retries = retries;
  }
  if (vm.count("retry-delay")) {
    static const std::regex kDelay("([0-9]+)(ms|s|m)?");
    std::smatch m;
    if (!std::regex_match(retry_delay, m, kDelay))
      usage("--retry-delay " + quote(retry_delay) + ": expected a duration such as 2s or 500ms");
    long long n = std::stoll(m[1].str());
    std::string unit = m[2].str();
    opts.retry_delay = std::chrono::milliseconds(unit == "ms"  ? n
                                                 : unit == "m" ? n * 60000
                                                               : n * 1000);
  }
  if (vm.count("shm-size")) {
    static const std::regex kSize("[0-9]+[bkmgBKMG]?");
    if (!std::regex_match(shm_size, kSize))
      usage("--shm-size " + quote(shm_size) + ": expected a size such as 64m or 1g");
    opts.shm_size = shm_size;
  }
  if (vm.count("no-hosts"))
    opts.no_hosts = flag_bool(no_hosts, "--no-hosts");
  if (vm.count("timestamp")) {
    if (timestamp < 0)
      usage("--timestamp " + std::to_string(timestamp) + ": expected seconds since 1970");
    opts.timestamp = timestamp;
  }
  if (vm.count("load"))
    opts.load = flag_bool(load, "--load");
  if (vm.count("squash"))
    opts.squash = flag_bool(squash, "--squash");
  if (vm.count("squash-all"))
    opts.squash_all = flag_bool(squash_all, "--squash-all");
  if (vm.count("omit-history"))
    opts.omit_history = flag_bool(omit_history, "--omit-history");
  if (vm.count("identity-label"))
    opts.identity_label = flag_bool(identity_label, "--identity-label");
  opts.iidfile = iidfile;
  opts.iidfile_raw = iidfile_raw;
  // Cgroup limits for RUN steps (runner::ResourceLimits).
  runner::ResourceLimits& res = opts.resources;
  if (vm.count("memory"))
    res.memory = parse_bytes(memory, "--memory", false);
  if (vm.count("memory-swap")) {
    res.memory_swap = parse_bytes(memory_swap, "--memory-swap", true);
    if (res.memory && *res.memory_swap >= 0 && *res.memory_swap < *res.memory)
      usage("--memory-swap " + memory_swap + " is less than --memory " + memory +
            " (it is memory plus swap)");
  }
  auto number = [&](const std::string& text, const char* flag, bool negative) -> int64_t {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || (n < 0 && !(negative && n == -1)))
      usage(std::string(flag) + " " + quote(text) + ": expected a number");
    return n;
  };
  if (vm.count("cpu-shares"))
    res.cpu_shares = static_cast<uint64_t>(number(cpu_shares, "--cpu-shares", false));
  if (vm.count("cpu-period"))
    res.cpu_period = static_cast<uint64_t>(number(cpu_period, "--cpu-period", false));
  if (vm.count("cpu-quota"))
    res.cpu_quota = number(cpu_quota, "--cpu-quota", true);
  static const std::regex kCpuList("[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*");
  if (vm.count("cpuset-cpus") && !std::regex_match(cpuset_cpus, kCpuList))
    usage("--cpuset-cpus " + quote(cpuset_cpus) + ": expected a list such as 0-3,6");
  if (vm.count("cpuset-mems") && !std::regex_match(cpuset_mems, kCpuList))
    usage("--cpuset-mems " + quote(cpuset_mems) + ": expected a list such as 0,1");
  res.cpuset_cpus = cpuset_cpus;
  res.cpuset_mems = cpuset_mems;
  if (vm.count("cgroup-parent")) {
    if (cgroup_parent.empty() || cgroup_parent.find("..") != std::string::npos)
      usage("--cgroup-parent " + quote(cgroup_parent) + ": expected a cgroup path such as /ci");
    res.cgroup_parent = cgroup_parent;
  }
  for (const std::string& mount : mounts) {
    if (mount.empty())
      usage("--mount needs a value such as type=cache,target=/root/.cache");
    opts.mounts.push_back(mount);
  }
  if (vm.count("os-version")) {
    if (os_version.empty())
      usage("--os-version needs a version");
    opts.os_version = os_version;
  }
  for (const std::string& feature : os_features) {
    if (feature.empty() || feature == "-")
      usage("--os-feature needs a feature name");
    opts.os_features.push_back(feature);
  }
  for (const std::string& group : group_add) {
    if (group.empty() || group.find(':') != std::string::npos)
      usage("--group-add " + quote(group) + ": expected a group name or number");
    if (group == "keep-groups")
      usage("--group-add keep-groups is not supported: RUN steps never get the caller's groups");
    opts.group_add.push_back(group);
  }
  for (const std::string& flag : runtime_flags) {
    if (flag.empty())
      usage("--runtime-flag needs a flag, e.g. debug");
    opts.runtime_flags.push_back(flag.starts_with("-") ? flag : "--" + flag);
  }
  if (!opts.runtime_flags.empty() && runtime.empty())
    usage("--runtime-flag is for an OCI runtime: give --runtime runc (or crun, or a path) too");
  if (vm.count("no-hostname"))
    (void)flag_bool(no_hostname, "--no-hostname");
  if (vm.count("manifest")) {
    try {
      oci::Store::canonical_name(manifest);
    } catch (const Error& e) {
      usage("--manifest " + quote(manifest) + ": " + e.what());
    }
    opts.manifest = manifest;
  }
  if (vm.count("from")) {
    if (from.empty())
      usage("--from needs an image name");
    opts.from = from;
  }
  if (vm.count("source-date-epoch")) {
    if (source_date_epoch < 0) {
      usage("--source-date-epoch " + std::to_string(source_date_epoch) +
            ": expected seconds since 1970");
    }
    opts.source_date_epoch = source_date_epoch;
  }
  if (vm.count("rewrite-timestamp"))
    (void)flag_bool(rewrite_timestamp, "--rewrite-timestamp");
  if (vm.count("created-annotation"))
    opts.created_annotation = flag_bool(created_annotation, "--created-annotation");
  if (vm.count("inherit-labels"))
    opts.inherit_labels = flag_bool(inherit_labels, "--inherit-labels");
  // Settings kiln has one way of doing: the value that names it is accepted, the other refused.
  auto only = [&](const char* flag, const std::string& value, bool accepted, const char* why) {
    if (vm.count(flag) && flag_bool(value, (std::string("--") + flag).c_str()) != accepted)
      usage(std::string("--") + flag + "=" + value + " is not supported: " + why);
  };
  only("inherit-annotations", inherit_annotations, false,
       "kiln never carries a base image's manifest annotations into the image (as BuildKit)");
  only("skip-unused-stages", skip_unused_stages, true,
       "kiln builds only the stages the target needs (as BuildKit)");
  only("compat-volumes", compat_volumes, false,
       "RUN's changes under a VOLUME stay in the image, as in BuildKit");
  for (const std::string& key : unset_annotations) {
    if (key.empty())
      usage("--unsetannotation needs an annotation name");
  }
  for (auto [flag, value] :
       {std::pair<const char*, std::string*>{"ipc", &ipc}, {"pid", &pid}, {"uts", &uts}}) {
    if (vm.count(flag) && *value != "private" && *value != "container" && !value->empty()) {
      std::string kind = to_upper(flag);
      usage(std::string("--") + flag + " " + quote(*value) +
            " is not supported: kiln runs every "
            "RUN step in " +
            (kind == "UTS" ? "a " : "an ") + kind + " namespace of its own (private)");
    }
  }
  if (vm.count("cgroupns") && cgroupns != "host" && !cgroupns.empty()) {
    usage("--cgroupns " + quote(cgroupns) +
          " is not supported: RUN steps share kiln's cgroup namespace (host)");
  }
  if (vm.count("compress"))
    (void)flag_bool(compress, "--compress");
  if (vm.count("disable-content-trust"))
    (void)flag_bool(content_trust, "--disable-content-trust");
  require_one_of(progress, "--progress", {"auto", "tty", "plain", "json", "quiet"});
  opts.progress = vm["quiet"].as<bool>() ? "quiet" : progress;
  if (vm.count("debug") && flag_bool(debug, "--debug") && opts.progress != "quiet")
    opts.progress = "plain";
  for (const std::string& h : add_hosts)
    opts.add_hosts.push_back(parse_add_host(h));
  for (const std::string& a : annotations) {
    // buildx's TYPE:K=V; TYPE[PLATFORM] and the *-descriptor types are not supported.
    size_t colon = a.find(':');
    std::string type = colon < a.find('=') ? a.substr(0, colon) : std::string();
    if (type == "index") {
      opts.index_annotations.push_back(key_value(a.substr(colon + 1), "--annotation"));
    } else if (type == "manifest") {
      opts.manifest_annotations.push_back(key_value(a.substr(colon + 1), "--annotation"));
    } else if (starts_with(type, "index") || starts_with(type, "manifest")) {
      usage("--annotation " + quote(a) + ": only the manifest: and index: targets are supported");
    } else {
      opts.manifest_annotations.push_back(key_value(a, "--annotation"));
    }
  }
  for (const std::string& c : build_contexts) {
    auto [name, named, fetch] = parse_build_context(c);
    if (!opts.build_contexts.emplace(name, named).second)
      usage("--build-context " + quote(name) + " is given twice");
    if (fetch)
      opts.fetched_contexts.push_back(name);
  }
  opts.metadata_file = metadata_file;
  opts.ignorefile = ignorefile;
  if (vm.count("jobs") && (jobs < 1 || jobs > 256))
    usage("--jobs " + std::to_string(jobs) + ": expected a number of stages from 1 to 256");
  opts.jobs = static_cast<size_t>(jobs);
  opts.sign_key = sign_key;
  if (vm.count("compression-format")) {
    if (compression_format == "zstd:chunked") {
      usage(
          "--compression-format zstd:chunked: kiln writes zstd layers without the chunked "
          "table of contents; use zstd (every reader of zstd:chunked reads them)");
    }
    if (!vm["compression"].defaulted() && compression != compression_format) {
      usage("--compression " + compression + " and --compression-format " + compression_format +
            " disagree: give one");
    }
    require_one_of(compression_format, "--compression-format", {"gzip", "zstd"});
    compression = compression_format;
  }
  if (vm.count("disable-compression") && flag_bool(disable_compression, "--disable-compression"))
    compression = "none";
  require_one_of(compression, "--compression", {"gzip", "zstd", "none"});
  opts.compression = compression;
  if (vm.count("compression-level")) {
    int most = compression == "zstd" ? 22 : 9;
    int least = compression == "zstd" ? 1 : 0;
    if (compression == "none" || compression_level < least || compression_level > most) {
      usage("--compression-level " + std::to_string(compression_level) + ": " +
            (compression == "none" ? std::string("the layers are not compressed")
                                   : compression + " takes " + std::to_string(least) + " to " +
                                         std::to_string(most)));
    }
    opts.compression_level = compression_level;
  }
  require_one_of(format, "--format", {"oci", "docker"});
  opts.format = format;
  for (const std::string& list : allow) {
    for (const std::string& a : split(list, ',')) {
      require_one_of(a, "--allow", {"security.insecure", "insecure", "network.host"});
      opts.allow.push_back(a);
    }
  }
  require_one_of(snapshotter, "--snapshotter", {"auto", "overlay", "copy"});
  opts.snapshotter = snapshotter;
  opts.runtime = runtime;
  require_one_of(plan_format, "--plan-format", {"text", "json"});
  if (vm["dry-run"].as<bool>())
    opts.dry_run = plan_format;
  // Attestations: --sbom/--provenance are buildx's shorthands of --attest type=...; buildah's
  // --sbom takes a scanner preset, whose format kiln's own generator follows.
  auto attestation = [&](const std::string& type, const std::string& spec, const char* flag) {
    bool enabled = true;
    for (const std::string& part : split(spec, ',')) {
      std::string item(trim(part));
      if (item.empty() || item == "true" || item == "1")
        continue;
      if (item == "false" || item == "0") {
        enabled = false;
        continue;
      }
      size_t eq = item.find('=');
      std::string key = item.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
      if (type == "sbom" && eq == std::string::npos) {
        require_one_of(item, flag,
                       {"syft", "syft-spdx", "syft-cyclonedx", "trivy", "trivy-spdx",
                        "trivy-cyclonedx", "spdx", "cyclonedx"});
        opts.attest.cyclonedx = item.ends_with("cyclonedx");
      } else if (key == "disabled") {
        enabled = !flag_bool(value, flag);
      } else if (key == "type") {
        // --attest's own key, read by the caller
      } else if (type == "sbom" && key == "generator") {
        opts.attest.cyclonedx = value.find("cyclonedx") != std::string::npos;
      } else if (type == "provenance" && key == "mode") {
        require_one_of(value, std::string(flag) + " mode", {"min", "max"});
        opts.attest.provenance = value;
      } else {
        usage(std::string(flag) + ": unknown option " + quote(key) +
              (type == "sbom" ? " (generator, disabled)" : " (mode, disabled)"));
      }
    }
    if (type == "sbom") {
      opts.attest.sbom = enabled;
    } else if (!enabled) {
      opts.attest.provenance.reset();
    } else if (!opts.attest.provenance) {
      opts.attest.provenance = "min";
    }
  };
  for (const std::string& spec : attest) {
    std::string type;
    for (const std::string& part : split(spec, ',')) {
      if (part.starts_with("type="))
        type = part.substr(5);
    }
    require_one_of(type, "--attest type", {"sbom", "provenance"});
    attestation(type, spec, "--attest");
  }
  if (vm.count("sbom"))
    attestation("sbom", sbom, "--sbom");
  if (vm.count("provenance"))
    attestation("provenance", provenance, "--provenance");
  opts.attest.include_args.insert(provenance_include_args.begin(), provenance_include_args.end());
  require_one_of(attest_format, "--attest-format", {"index", "referrers"});
  opts.attest.referrers = attest_format == "referrers";
  opts.attest.sbom_output = sbom_output;
  opts.attest.sbom_purl_output = sbom_purl_output;
  if ((!sbom_output.empty() || !sbom_purl_output.empty()) && !opts.attest.sbom)
    opts.attest.sbom = true;  // buildah: an output asks for the SBOM

  if (vm["check"].as<bool>()) {
    if (!call.empty() && !call.starts_with("check"))
      usage("--check and --call " + call + " ask for different things: give one");
    if (call.empty())
      call = "check";
  }
  if (!call.empty()) {
    std::vector<std::string> parts = split(call, ',');
    opts.call.function = to_lower(trim(parts.front()));
    if (opts.call.function == "lint")
      opts.call.function = "check";
    require_one_of(opts.call.function, "--call", {"build", "check", "outline", "targets"});
    for (size_t i = 1; i < parts.size(); ++i) {
      size_t eq = parts[i].find('=');
      std::string key(trim(std::string_view(parts[i]).substr(0, eq)));
      std::string value = eq == std::string::npos ? "" : parts[i].substr(eq + 1);
      if (key == "format") {
        require_one_of(value, "--call format", {"text", "json"});
        opts.call.json = value == "json";
      } else if (key == "ignorestatus") {
        opts.call.ignore_status = flag_bool(value, "--call ignorestatus");
      } else {
        usage("--call: unknown option " + key + " (format, ignorestatus)");
      }
    }
  }
  if (opts.push && opts.tags.empty())
    usage("--push needs a -t TAG naming the registry image");
  return opts;
}

}  // namespace kiln::cli
