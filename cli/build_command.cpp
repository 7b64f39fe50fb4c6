#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <sstream>
#include <thread>

#include "app.hpp"
#include "build_options.hpp"
#include "call_command.hpp"
#include "containerfile_input.hpp"
#include "kiln/base/cleanup.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/base/subprocess.hpp"
#include "kiln/exporter/exporter.hpp"
#include "kiln/exporter/signing.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/isolation.hpp"
#include "kiln/runner/userns.hpp"
#include "kiln/session/context_source.hpp"
#include "kiln/session/session.hpp"
#include "kiln/snapshotter/compression.hpp"
#include "kiln/solver/builder.hpp"
#include "kiln/solver/progress_renderer.hpp"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

std::optional<int64_t> source_date_epoch() {
  const char* value = std::getenv("SOURCE_DATE_EPOCH");
  if (!value || !*value)
    return std::nullopt;
  int64_t seconds = 0;
  std::string_view text(value);
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || seconds < 0) {
    throw Error("SOURCE_DATE_EPOCH=" + std::string(value) +
                " is not a number of seconds since 1970-01-01");
  }
  return seconds;
}

// BuildKit's way of asking for a reproducible build: --build-arg SOURCE_DATE_EPOCH=N.
std::optional<int64_t> source_date_epoch_arg(
    const std::vector<std::pair<std::string, std::string>>& build_args) {
  std::optional<int64_t> epoch;
  for (const auto& [name, value] : build_args) {
    if (name != "SOURCE_DATE_EPOCH")
      continue;
    int64_t seconds = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || end != value.data() + value.size() || seconds < 0) {
      throw Error("--build-arg SOURCE_DATE_EPOCH=" + value +
                  " is not a number of seconds since 1970-01-01");
    }
    epoch = seconds;  // the last one wins, as for every build argument
  }
  return epoch;
}

oci::RegistryOptions registry_options(const BuildCommandOptions& opts) {
  oci::RegistryOptions options;
  options.tls_verify = opts.tls_verify;
  if (opts.retries)
    options.retries = *opts.retries;
  options.retry_delay = opts.retry_delay;
  if (!opts.creds.empty()) {
    size_t colon = opts.creds.find(':');
    if (colon == std::string::npos)
      throw UsageError("--creds must be USER:PASSWORD", kBuildUsage);
    options.credentials =
        oci::Credentials{opts.creds.substr(0, colon), opts.creds.substr(colon + 1)};
  }
  if (!opts.authfile.empty())
    options.auth_file = opts.authfile;
  if (!opts.cert_dir.empty())
    options.cert_dir = opts.cert_dir;
  return options;
}

// Where the image is pushed: each -t name with --push, and the names (else the tags) of
// -o type=registry and of -o type=image,push=true; by digest only with push-by-digest=true
// (which parse_output lets through only with name=).
std::vector<session::PushTarget> push_targets(const BuildCommandOptions& opts) {
  std::vector<session::PushTarget> out;
  if (opts.push) {
    for (const std::string& tag : opts.tags)
      out.push_back({tag, false});
  }
  for (const TypedSpec& o : opts.outputs) {
    if (o.type != "registry" && !(o.type == "image" && o.attr("push") == "true"))
      continue;
    bool by_digest = o.attr("push-by-digest") == "true";
    if (auto name = o.attr("name")) {
      for (const std::string& n : split(*name, ','))
        out.push_back({std::string(trim(n)), by_digest});
    } else {
      for (const std::string& tag : opts.tags)
        out.push_back({tag, false});
    }
  }
  if ((opts.push || !out.empty()) && out.empty())
    throw Error("--push needs an image name: give -t NAME (or -o type=registry,name=NAME)");
  return out;
}

std::vector<session::Output> outputs_of(const BuildCommandOptions& opts) {
  std::vector<session::Output> out;
  for (const TypedSpec& o : opts.outputs) {
    session::Output output;
    output.dest = o.attr("dest").value_or("");
    if (o.type == "oci") {
      bool tar =
          ends_with(output.dest.string(), ".tar") || o.attr("tar").value_or("false") == "true";
      output.type = tar ? session::Output::Type::kOciArchive : session::Output::Type::kOciLayout;
    } else if (o.type == "docker") {
      output.type = session::Output::Type::kDockerArchive;
    } else if (o.type == "local") {
      output.type = session::Output::Type::kLocal;
    } else if (o.type == "tar") {
      output.type = session::Output::Type::kTar;
    } else {
      continue;  // image: the store, which every build writes; registry: a push target
    }
    out.push_back(std::move(output));
  }
  return out;
}

std::vector<session::CacheLocation> caches_of(const std::vector<TypedSpec>& specs, bool from) {
  std::vector<session::CacheLocation> out;
  for (const TypedSpec& c : specs) {
    session::CacheLocation location;
    bool local = c.type == "local";
    location.type =
        local ? session::CacheLocation::Type::kLocal : session::CacheLocation::Type::kRegistry;
    location.location = c.attr(local ? (from ? "src" : "dest") : "ref").value_or("");
    location.max = c.attr("mode").value_or("min") == "max";
    out.push_back(std::move(location));
  }
  return out;
}

// --load: the image (a docker archive written by the build) into docker's store, or podman's
// when docker is missing or its daemon does not answer. Says which, or why neither.
void load_image(const fs::path& archive, const fs::path& scratch, std::ostream& err) {
  std::string docker = find_program("docker"), podman = find_program("podman");
  if (docker.empty() && podman.empty()) {
    throw Error(
        "--load: neither docker nor podman is installed; the image is in kiln's store "
        "(kiln save -o FILE IMAGE writes an archive either loads)");
  }
  std::string why;
  for (const std::string& tool : {docker, podman}) {
    if (tool.empty())
      continue;
    fs::path log = scratch / "load.log";
    int status = run_to_end({tool, "load", "-i", archive.string()}, log);
    std::string said = last_line_of(log);
    std::string name = fs::path(tool).filename().string();
    if (status == 0) {
      err << "Loaded into " << name << ": " << said << "\n";
      return;
    }
    why += (why.empty() ? "" : "; ") + name + " load failed: " + said;
  }
  throw Error("--load: " + why);
}

}  // namespace

int build_command(const std::vector<std::string>& args, Io io) {
  std::optional<BuildCommandOptions> opts = parse_build_options(args, io.out);
  if (!opts)
    return kExitOk;

  // A directory, or "-", a tar archive, a URL or a git repository fetched into a temporary one.
  session::ContextSource source = session::ContextSource::open(opts->context, std::cin);
  fs::path context = source.dir();
  if (source.stdin_containerfile() && opts->file == "-")
    throw Error("-f - and the context - both read standard input: give one");
  // --build-context NAME=ARCHIVE|URL|GIT: fetched the same way, each into its own directory.
  std::vector<session::ContextSource> named_sources;
  for (const std::string& name : opts->fetched_contexts) {
    std::istringstream no_stdin;
    frontend::NamedContext& named = opts->build_contexts.at(name);
    try {
      named_sources.push_back(session::ContextSource::open(named.value, no_stdin));
    } catch (const Error& e) {
      throw Error("--build-context " + name + ": " + e.what());
    }
    named.value = named_sources.back().dir().string();
  }
  frontend::Containerfile file = load_containerfile(opts->file, context);
  // Findings of build checks (rule-named) come with the checks, after planning.
  std::vector<frontend::Warning> plain_warnings;
  std::copy_if(file.warnings.begin(), file.warnings.end(), std::back_inserter(plain_warnings),
               [](const frontend::Warning& w) { return w.rule.empty(); });
  print_warnings(plain_warnings, io.err);

  session::SessionRequest request;
  request.file = &file;
  request.solve.context = context;
  if (!opts->ignorefile.empty()) {
    request.solve.ignore =
        frontend::IgnoreMatcher::parse(read_file(opts->ignorefile), opts->ignorefile);
  } else if (opts->file != "-") {
    // Read now so that a malformed ignore file fails the build before anything runs.
    request.solve.ignore =
        frontend::load_ignore_rules(context, containerfile_path(opts->file, context));
  }
  // buildah: --source-date-epoch is also the SOURCE_DATE_EPOCH build argument.
  if (opts->source_date_epoch &&
      std::none_of(opts->build_args.begin(), opts->build_args.end(),
                   [](const auto& arg) { return arg.first == "SOURCE_DATE_EPOCH"; })) {
    opts->build_args.emplace_back("SOURCE_DATE_EPOCH", std::to_string(*opts->source_date_epoch));
  }
  request.build_args = opts->build_args;
  request.target = opts->target;
  request.platforms = opts->platforms;
  request.all_platforms = opts->all_platforms;
  request.manifest_list = opts->manifest;
  request.named_contexts = opts->build_contexts;
  request.first_base = opts->from;
  request.run.network = opts->network == "none"   ? frontend::ExecOp::Network::kNone
                        : opts->network == "host" ? frontend::ExecOp::Network::kHost
                                                  : frontend::ExecOp::Network::kSandbox;
  request.run.extra_hosts = opts->add_hosts;
  for (const std::string& a : opts->allow) {
    if (a == "network.host")
      request.run.allow_network_host = true;
    else
      request.run.allow_insecure = true;
  }
  // Asking for the host's network is the entitlement too (buildx adds it for --network host).
  if (opts->network == "host")
    request.run.allow_network_host = true;
  request.run.extra_mounts = opts->mounts;
  request.solve.no_cache_filter = opts->no_cache_filter;
  // The same step in a later build: same context, Containerfile, stage and place (explain.hpp).
  std::error_code ec;
  request.solve.history_scope =
      (fs::is_directory(opts->context, ec) ? fs::weakly_canonical(opts->context, ec).string()
                                           : source.description()) +
      '\n' + (opts->file == "-" ? "-" : containerfile_path(opts->file, context).string());

  if (opts->call.function != "build")
    return call_command(*opts, request, io);

  if (opts->dry_run) {
    frontend::BuildOptions build;
    build.build_args = opts->build_args;
    build.target = opts->target;
    build.named_contexts = opts->build_contexts;
    build.first_base = opts->from;
    if (!opts->platforms.empty())
      build.target_platform = opts->platforms.front();
    frontend::BuildPlan plan = frontend::plan_build(file, build);
    print_warnings(plan.warnings, io.err);
    // Lowered even for the text form: bad flag values fail here, as they would in a build.
    std::vector<frontend::OpGraph> graphs = session::plan(request);
    if (*opts->dry_run == "json") {
      io.out << frontend::graph_to_json(graphs.front()).dump(2) << "\n";
    } else {
      io.out << frontend::describe_plan(plan);
    }
    return kExitOk;
  }

  request.tags = opts->tags;
  request.outputs = outputs_of(*opts);
  // --load: a docker archive beside the other outputs, handed to docker or podman afterwards.
  std::optional<TempDir> load_dir;
  if (opts->load) {
    load_dir.emplace(fs::path{}, "kiln-load-");
    session::Output archive;
    archive.type = session::Output::Type::kDockerArchive;
    archive.dest = load_dir->path() / "image.tar";
    request.outputs.push_back(archive);
  }
  request.push = push_targets(*opts);
  request.registry = registry_options(*opts);
  request.pull = opts->pull;
  request.solve.no_cache = opts->no_cache;
  request.solve.cache_ttl = opts->cache_ttl;
  request.cache_from = caches_of(opts->cache_from, /*from=*/true);
  request.cache_to = caches_of(opts->cache_to, /*from=*/false);
  request.solve.layers.compression.algorithm = snapshotter::parse_compression(opts->compression);
  // The first of --timestamp, --source-date-epoch, $SOURCE_DATE_EPOCH and (BuildKit's way) a
  // SOURCE_DATE_EPOCH build argument.
  request.solve.source_date_epoch = opts->timestamp           ? opts->timestamp
                                    : opts->source_date_epoch ? opts->source_date_epoch
                                                              : source_date_epoch();
  if (!request.solve.source_date_epoch)
    request.solve.source_date_epoch = source_date_epoch_arg(opts->build_args);
  request.solve.layers.source_date_epoch = request.solve.source_date_epoch;
  request.solve.layers.all_mtimes = opts->timestamp.has_value();
  request.solve.labels = opts->labels;
  if (opts->identity_label)
    request.solve.labels.emplace_back("io.kiln.version", KILN_VERSION);
  request.solve.unset_labels = opts->unset_labels;
  request.solve.env = opts->env;
  request.solve.unset_env = opts->unset_env;
  request.solve.omit_history = opts->omit_history;
  request.solve.inherit_labels = opts->inherit_labels;
  request.solve.squash = opts->squash_all ? solver::BuildRequest::Squash::kAll
                         : opts->squash   ? solver::BuildRequest::Squash::kNew
                                          : solver::BuildRequest::Squash::kNone;
  request.solve.dns_servers = opts->dns_servers;
  request.solve.dns_search = opts->dns_search;
  request.solve.dns_options = opts->dns_options;
  request.solve.no_hosts = opts->no_hosts;
  request.solve.cap_add = opts->cap_add;
  request.solve.cap_drop = opts->cap_drop;
  request.solve.no_new_privs = opts->no_new_privs;
  request.solve.no_seccomp = opts->no_seccomp;
  for (const BuildCommandOptions::Ulimit& l : opts->ulimits)
    request.solve.rlimits.push_back({l.resource, l.soft, l.hard});
  request.solve.shm_size = opts->shm_size;
  request.solve.resources = opts->resources;
  request.solve.runtime_flags = opts->runtime_flags;
  request.solve.group_add = opts->group_add;
  request.solve.os_version = opts->os_version;
  request.solve.os_features = opts->os_features;
  for (const BuildCommandOptions::Volume& v : opts->volumes)
    request.solve.volumes.push_back({v.source, v.target, v.read_only});
  // Devices are binds too, made after the sandbox's /dev (on its tmpfs, never in a layer).
  for (const BuildCommandOptions::Volume& d : opts->devices)
    request.solve.volumes.push_back({d.source, d.target, d.read_only});
  if (opts->http_proxy) {
    for (const char* name : {"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "HTTP_PROXY",
                             "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY"}) {
      if (const char* value = std::getenv(name))
        request.solve.run_env.emplace_back(name, value);
    }
  }
  request.solve.layers.compression.level = opts->compression_level;
  request.format =
      opts->format == "docker" ? exporter::ManifestFormat::kDocker : exporter::ManifestFormat::kOci;
  request.manifest_annotations.insert(opts->manifest_annotations.begin(),
                                      opts->manifest_annotations.end());
  request.index_annotations.insert(opts->index_annotations.begin(), opts->index_annotations.end());
  if (opts->created_annotation) {
    std::string created = solver::build_timestamp(request.solve.source_date_epoch);
    request.manifest_annotations.emplace("org.opencontainers.image.created", created);
    if (opts->platforms.size() > 1)
      request.index_annotations.emplace("org.opencontainers.image.created", created);
  }
  request.metadata_file = opts->metadata_file;
  request.attest.sbom = opts->attest.sbom;
  request.attest.cyclonedx = opts->attest.cyclonedx;
  request.attest.provenance = opts->attest.provenance;
  request.attest.include_args = opts->attest.include_args;
  request.attest.sbom_output = opts->attest.sbom_output;
  request.attest.sbom_purl_output = opts->attest.sbom_purl_output;
  request.attest.referrers = opts->attest.referrers;
  // A remote context is recorded by its URL without credentials; a local directory by nothing
  // (its path says nothing to anyone else; provenance carries its digest).
  if (!fs::is_directory(opts->context, ec)) {
    std::string uri = opts->context;
    size_t scheme = uri.find("://");
    size_t at = scheme == std::string::npos ? uri.npos : uri.find('@', scheme + 3);
    if (at != std::string::npos && at < uri.find('/', scheme + 3))
      uri.erase(scheme + 3, at - scheme - 2);
    request.attest.context_uri = uri;
  }
  for (const SecretSpec& secret : opts->secrets)
    request.solve.secrets[secret.id] = {secret.src, secret.env};
  for (const auto& [id, socket] : opts->ssh)
    request.solve.ssh_agents[id] = socket;
  request.solve.snapshotter = opts->snapshotter;
  request.solve.runtime = opts->runtime;
  request.solve.isolation = runner::parse_isolation(opts->isolation);
  request.solve.jobs = opts->jobs;
  session::validate(request, !opts->sign_key.empty());
  // Loaded (and its password asked for) before anything runs.
  if (!opts->sign_key.empty())
    request.sign_key = exporter::load_signing_key(opts->sign_key);

  // The store is chosen as the invoking user before a rootless build becomes root inside its
  // user namespace (where the root default would apply).
  fs::path store_root = oci::Store::default_root();
  // --logfile: the progress goes there (opened as the invoking user), plain, not to the terminal.
  std::ofstream logfile;
  if (!opts->logfile.empty()) {
    logfile.open(opts->logfile, std::ios::out | std::ios::trunc);
    if (!logfile)
      throw Error("--logfile " + opts->logfile + ": cannot open it: " + std::strerror(errno));
  }
  std::ostream& progress_out = opts->logfile.empty() ? io.err : logfile;
  runner::enter_build_user_namespace([&](const std::string& notice) { io.err << notice << "\n"; });
  // From here on, a Ctrl-C or kill removes the build's scratch directories (secrets among them).
  remove_on_signals();
  oci::Store store(store_root);
  std::unique_ptr<solver::ProgressSink> progress = solver::make_progress_sink(
      solver::parse_progress_mode(opts->progress,
                                  opts->logfile.empty() && ::isatty(STDERR_FILENO) == 1),
      progress_out);
  request.solve.progress = progress.get();
  auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  // Whatever happens, the progress display ends before the result or the error is printed.
  struct Finish {
    solver::ProgressSink& sink;
    std::function<double()> elapsed;
    bool succeeded = false;
    bool ended = false;
    void end() {
      if (!ended)
        sink.finish();
      ended = true;
    }
    ~Finish() {
      if (!succeeded) {
        solver::ProgressEvent e;
        e.kind = solver::ProgressEvent::Kind::kBuildDone;
        e.seconds = elapsed();
        sink.event(e);
      }
      end();
    }
  } finish{*progress, elapsed};

  session::SessionResult result = session::run(store, request);
  if (load_dir)
    load_image(load_dir->path() / "image.tar", load_dir->path(), io.err);
  if (!opts->iidfile.empty())
    write_user_file(opts->iidfile, result.image_id);
  if (!opts->iidfile_raw.empty()) {
    std::string_view id = result.image_id;
    write_user_file(opts->iidfile_raw, std::string(id.substr(id.find(':') + 1)));
  }
  solver::ProgressEvent done;
  done.kind = solver::ProgressEvent::Kind::kBuildDone;
  done.text = result.image_id;
  done.detail = result.top.digest.str();
  done.seconds = elapsed();
  progress->event(done);
  finish.succeeded = true;
  finish.end();
  std::string summary = solver::explain_summary(result.explanations, result.steps_cached);
  if (opts->explain && opts->progress != "json") {
    for (const solver::StepExplanation& why : result.explanations)
      io.err << "explain: " << why.step << ": " << why.text << "\n";
    io.err << "explain: " << summary << "\n";
  }
  if (opts->progress == "json") {
    nlohmann::ordered_json j{{"image", result.image_id},
                             {"manifest", result.top.digest.str()},
                             {"steps_run", result.steps_run},
                             {"steps_cached", result.steps_cached},
                             {"seconds", elapsed()}};
    if (opts->explain) {
      j["explain"] = {{"summary", summary}, {"steps", nlohmann::ordered_json::array()}};
      for (const solver::StepExplanation& why : result.explanations)
        j["explain"]["steps"].push_back(
            {{"step", why.step}, {"cause", why.cause}, {"reason", why.text}});
    }
    io.out << j.dump() << "\n";
  } else {
    io.out << result.image_id << "\n";
  }
  return kExitOk;
}

}  // namespace kiln::cli
