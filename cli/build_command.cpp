#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <thread>

#include "app.hpp"
#include "build_options.hpp"
#include "containerfile_input.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/exporter.hpp"
#include "kiln/exporter/signing.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/userns.hpp"
#include "kiln/snapshotter/compression.hpp"
#include "kiln/solver/builder.hpp"
#include "kiln/solver/cache_transfer.hpp"
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

// Outputs and flags that need a later part of kiln are refused before anything runs.
void refuse_unavailable(const BuildCommandOptions& opts) {
  if (opts.platforms.size() > 1) {
    for (const TypedSpec& o : opts.outputs) {
      if (o.type == "docker")
        throw Error("-o type=docker cannot hold " + std::to_string(opts.platforms.size()) +
                    " platforms (a docker-archive has no index): choose one with --platform, or "
                    "use -o type=oci");
      if (o.type == "tar")
        throw Error(
            "-o type=tar writes one filesystem: choose one --platform, or use "
            "-o type=local (a directory per platform)");
    }
  }
  if (!opts.sign_key.empty() && !opts.push &&
      std::none_of(opts.outputs.begin(), opts.outputs.end(),
                   [](const TypedSpec& o) { return o.type == "registry"; })) {
    throw Error(
        "--sign-key signs what the build pushes: add --push (or -o type=registry), or "
        "sign a local image with `kiln sign`");
  }
}

oci::RegistryOptions registry_options(const BuildCommandOptions& opts) {
  oci::RegistryOptions options;
  options.tls_verify = opts.tls_verify;
  if (!opts.creds.empty()) {
    size_t colon = opts.creds.find(':');
    if (colon == std::string::npos)
      throw UsageError("--creds must be USER:PASSWORD", kBuildUsage);
    options.credentials =
        oci::Credentials{opts.creds.substr(0, colon), opts.creds.substr(colon + 1)};
  }
  if (!opts.authfile.empty())
    options.auth_file = opts.authfile;
  return options;
}

// Where the image is pushed: each -t name with --push, and the names of -o type=registry.
std::vector<std::string> push_targets(const BuildCommandOptions& opts) {
  std::vector<std::string> out;
  if (opts.push)
    out.insert(out.end(), opts.tags.begin(), opts.tags.end());
  for (const TypedSpec& o : opts.outputs) {
    if (o.type != "registry")
      continue;
    if (auto name = o.attr("name")) {
      for (const std::string& n : split(*name, ','))
        out.push_back(std::string(trim(n)));
    } else {
      out.insert(out.end(), opts.tags.begin(), opts.tags.end());
    }
  }
  if ((opts.push || !out.empty()) && out.empty())
    throw Error("--push needs an image name: give -t NAME (or -o type=registry,name=NAME)");
  for (const std::string& target : out)
    oci::parse_reference(target);  // a malformed name fails before the build
  return out;
}

// The cache a --cache-from names; nullptr when there is none yet.
std::shared_ptr<solver::RemoteCache> open_cache(const TypedSpec& c,
                                                const oci::RegistryOptions& options) {
  if (c.type == "local")
    return solver::open_layout_cache(c.attr("src").value_or(""));
  oci::Reference ref = oci::parse_reference(c.attr("ref").value_or(""));
  auto client = std::make_shared<oci::RegistryClient>(ref.domain, options);
  std::string source = "type=registry,ref=" + ref.str();
  std::string tag = ref.digest ? ref.digest->str() : ref.tag;
  if (!client->head_manifest(ref.path, tag))
    return nullptr;
  oci::RegistryClient::Manifest manifest = client->get_manifest(ref.path, tag);
  oci::Manifest parsed = oci::parse_manifest(manifest.bytes);
  struct StringSink : ByteSink {
    std::string bytes;
    void write(const void* data, size_t size) override {
      bytes.append(static_cast<const char*>(data), size);
    }
  } config;
  client->get_blob(ref.path, parsed.config, config);
  std::vector<solver::CacheRecord> records =
      solver::parse_cache_manifest(manifest.bytes, config.bytes, source);
  std::string repo = ref.path;
  auto fetch = [client, repo](const oci::Descriptor& layer, oci::Store& store) {
    std::unique_ptr<oci::BlobWriter> writer = store.begin_blob();
    client->get_blob(repo, layer, *writer);
    writer->commit(layer.digest);
  };
  return std::make_shared<solver::RemoteCache>(source, records, fetch);
}

// One platform's result.
struct PlatformResult {
  oci::Platform platform;
  solver::BuiltImage built;
  exporter::CommittedImage image;
};

// "linux/arm64/v8" → "linux_arm64_v8", BuildKit's directory name for a platform's files.
std::string platform_dir(const oci::Platform& p) {
  std::string out = p.to_string();
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

void write_outputs(const BuildCommandOptions& opts, oci::Store& store, const oci::Descriptor& top,
                   std::vector<PlatformResult>& results, const std::optional<int64_t>& sde,
                   const std::function<void(const std::string&)>& say) {
  for (const TypedSpec& o : opts.outputs) {
    std::string dest = o.attr("dest").value_or("");
    if (o.type == "oci") {
      bool tar = ends_with(dest, ".tar") || o.attr("tar").value_or("false") == "true";
      if (tar) {
        exporter::write_oci_archive(store, top, opts.tags, dest);
      } else {
        exporter::write_oci_layout(store, top, opts.tags, dest);
      }
    } else if (o.type == "docker") {
      exporter::write_docker_archive(store, results.front().image.manifest, opts.tags, dest);
    } else if (o.type == "local") {
      if (results.size() == 1) {
        exporter::write_rootfs_directory(results.front().built.rootfs(), dest);
      } else {
        for (PlatformResult& r : results)
          exporter::write_rootfs_directory(r.built.rootfs(),
                                           fs::path(dest) / platform_dir(r.platform));
      }
    } else if (o.type == "tar") {
      exporter::write_rootfs_tar(results.front().built.rootfs(), dest, sde);
    } else if (o.type == "image" || o.type == "registry") {
      continue;  // the store, which every build writes anyway; registry pushes come after
    }
    if (dest != "-")
      say("Wrote " + o.type + " output to " + dest);
  }
}

// A local --build-context's own ignore file (.containerignore, else .dockerignore), as BuildKit
// reads .dockerignore at a named context's root.
frontend::IgnoreMatcher directory_context_ignore(const fs::path& dir) {
  for (const char* name : {".containerignore", ".dockerignore"}) {
    fs::path file = dir / name;
    if (fs::exists(file))
      return frontend::IgnoreMatcher::parse(read_file(file), file.string());
  }
  return {};
}

// --metadata-file: what buildx writes for an image build, so CI scripts can read the digest.
void write_metadata_file(const std::string& path, const BuildCommandOptions& opts,
                         const oci::Descriptor& top, const std::vector<PlatformResult>& results,
                         bool multi) {
  nlohmann::ordered_json meta;
  meta["containerimage.digest"] = top.digest.str();
  meta["containerimage.descriptor"] = {
      {"mediaType", top.media_type}, {"digest", top.digest.str()}, {"size", top.size}};
  if (!multi)
    meta["containerimage.config.digest"] = results.front().image.config.str();
  if (!opts.tags.empty()) {
    std::vector<std::string> names;
    for (const std::string& tag : opts.tags)
      names.push_back(oci::Store::canonical_name(tag));
    meta["image.name"] = join(names, ",");
  }
  oci::write_file_atomically(path, meta.dump(2) + "\n");
}

}  // namespace

int build_command(const std::vector<std::string>& args, Io io) {
  std::optional<BuildCommandOptions> opts = parse_build_options(args, io.out);
  if (!opts)
    return kExitOk;

  fs::path context = opts->context;
  std::error_code ec;
  if (!fs::is_directory(context, ec)) {
    throw Error("build context " + context.string() + " is not a directory");
  }
  frontend::Containerfile file = load_containerfile(opts->file, context);
  print_warnings(file.warnings, io.err);
  frontend::IgnoreMatcher ignore;
  if (!opts->ignorefile.empty()) {
    ignore = frontend::IgnoreMatcher::parse(read_file(opts->ignorefile), opts->ignorefile);
  } else if (opts->file != "-") {
    // Read now so that a malformed ignore file fails the build before anything runs.
    ignore = frontend::load_ignore_rules(context, containerfile_path(opts->file, context));
  }

  frontend::BuildOptions build;
  build.build_args = opts->build_args;
  build.target = opts->target;
  build.named_contexts = opts->build_contexts;
  if (!opts->platforms.empty())
    build.target_platform = opts->platforms.front();

  if (opts->dry_run) {
    frontend::BuildPlan plan = frontend::plan_build(file, build);
    print_warnings(plan.warnings, io.err);
    if (*opts->dry_run == "json") {
      io.out << frontend::plan_to_json(plan).dump(2) << "\n";
    } else {
      io.out << frontend::describe_plan(plan);
    }
    return kExitOk;
  }
  refuse_unavailable(*opts);
  std::vector<std::string> pushes = push_targets(*opts);
  // Loaded (and its password asked for) before anything runs.
  std::optional<exporter::SigningKey> sign_key;
  if (!opts->sign_key.empty())
    sign_key = exporter::load_signing_key(opts->sign_key);
  for (const std::string& tag : opts->tags)
    oci::Store::canonical_name(tag);  // validate early

  std::optional<int64_t> sde = source_date_epoch();
  // The store is chosen as the invoking user before a rootless build becomes root inside its
  // user namespace (where the root default would apply).
  fs::path store_root = oci::Store::default_root();
  runner::enter_build_user_namespace([&](const std::string& notice) { io.err << notice << "\n"; });
  oci::Store store(store_root);
  solver::BuildRequest request;
  request.context = context;
  request.ignore = ignore;
  request.named_contexts = opts->build_contexts;
  for (const auto& [name, c] : opts->build_contexts) {
    if (c.local)
      request.directory_ignores[c.value] = directory_context_ignore(c.value);
  }
  request.platform = build.target_platform;
  request.layers.compression.algorithm = snapshotter::parse_compression(opts->compression);
  request.layers.source_date_epoch = sde;
  request.source_date_epoch = sde;
  request.labels = opts->labels;
  request.network = opts->network;
  request.snapshotter = opts->snapshotter;
  request.runtime = opts->runtime;
  request.allow_insecure = !opts->allow.empty();
  request.cache_mounts = store.root() / "cache-mounts";
  for (const SecretSpec& secret : opts->secrets) {
    request.secrets[secret.id] = {secret.src, secret.env};
  }
  request.extra_hosts = opts->add_hosts;
  request.jobs = opts->jobs;
  for (const auto& [id, socket] : opts->ssh)
    request.ssh_agents[id] = socket;
  request.no_cache = opts->no_cache;
  request.no_cache_filter = opts->no_cache_filter;
  std::unique_ptr<solver::ProgressSink> progress = solver::make_progress_sink(
      solver::parse_progress_mode(opts->progress, ::isatty(STDERR_FILENO) == 1), io.err);
  request.progress = progress.get();
  auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  auto say = [&](const std::string& text) {
    solver::ProgressEvent e;
    e.kind = solver::ProgressEvent::Kind::kMessage;
    e.text = text;
    progress->event(e);
  };
  // Whatever happens, the progress display ends before the result or the error is printed.
  struct Finish {
    solver::ProgressSink& sink;
    std::function<double()> elapsed;
    bool succeeded = false;
    ~Finish() {
      if (!succeeded) {
        solver::ProgressEvent e;
        e.kind = solver::ProgressEvent::Kind::kBuildDone;
        e.seconds = elapsed();
        sink.event(e);
      }
      sink.finish();
    }
  } finish{*progress, elapsed};

  request.registry = registry_options(*opts);
  request.pull = opts->pull;
  for (const TypedSpec& c : opts->cache_from) {
    std::string src = c.attr(c.type == "local" ? "src" : "ref").value_or("");
    std::shared_ptr<solver::RemoteCache> remote;
    try {
      remote = open_cache(c, request.registry);
    } catch (const Error& e) {
      say(std::string("WARNING: ") + e.what() + "; building without it");
      continue;
    }
    if (remote) {
      say("Importing cache from " + remote->source() + ": " + std::to_string(remote->size()) +
          " records");
      request.cache_from.push_back(remote);
    } else {
      say("No cache to import at " + src);
    }
  }

  // One Builder per platform, all at once; steps they share (a BUILDPLATFORM stage whose key
  // does not depend on the target) run once.
  std::vector<oci::Platform> platforms = opts->platforms;
  if (platforms.empty())
    platforms.push_back(build.target_platform);
  bool multi = platforms.size() > 1;
  request.shared_steps = solver::make_shared_steps();
  std::vector<std::unique_ptr<solver::Builder>> builders;
  std::vector<frontend::BuildPlan> plans;
  for (size_t i = 0; i < platforms.size(); ++i) {
    solver::BuildRequest r = request;
    r.platform = platforms[i];
    if (multi)
      r.step_prefix = platforms[i].to_string() + " ";
    builders.push_back(std::make_unique<solver::Builder>(store, r));
    solver::Builder& builder = *builders.back();
    frontend::BuildOptions b = build;
    b.target_platform = platforms[i];
    b.base_image = [&builder](const std::string& ref, const oci::Platform& platform) {
      return builder.base_image(ref, platform);
    };
    plans.push_back(frontend::plan_build(file, b));
    if (i == 0) {
      for (const frontend::Warning& w : plans.back().warnings)
        say(format_warning(w));
    }
  }
  // Every platform is checked before any of them starts a step.
  for (size_t i = 0; i < platforms.size(); ++i)
    builders[i]->check(plans[i]);
  std::vector<PlatformResult> results(platforms.size());
  std::vector<std::exception_ptr> errors(platforms.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < platforms.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          results[i].platform = platforms[i];
          results[i].built = builders[i]->build(plans[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    }
    for (std::thread& t : threads)
      t.join();
  }
  std::vector<std::string> failures;
  for (size_t i = 0; i < platforms.size(); ++i) {
    if (!errors[i])
      continue;
    if (!multi)
      std::rethrow_exception(errors[i]);
    try {
      std::rethrow_exception(errors[i]);
    } catch (const std::exception& e) {
      failures.push_back(platforms[i].to_string() + ": " + e.what());
    }
  }
  if (failures.size() == 1 && multi) {
    std::rethrow_exception(*std::find_if(errors.begin(), errors.end(),
                                         [](const std::exception_ptr& e) { return bool(e); }));
  }
  if (!failures.empty())
    throw Error(std::to_string(failures.size()) + " platforms failed:\n" + join(failures, "\n"));

  exporter::ManifestFormat format =
      opts->format == "docker" ? exporter::ManifestFormat::kDocker : exporter::ManifestFormat::kOci;
  std::map<std::string, std::string> manifest_annotations(opts->manifest_annotations.begin(),
                                                          opts->manifest_annotations.end());
  for (PlatformResult& r : results) {
    r.image =
        exporter::commit_image(store, r.built.config, r.built.layers, format, manifest_annotations);
  }
  // One platform: its manifest. Several: an index of them, which tags and outputs carry.
  oci::Descriptor top = results.front().image.manifest;
  std::string image_id = results.front().image.config.str();
  if (multi) {
    oci::Index index;
    index.media_type = opts->format == "docker" ? oci::media_type::kDockerManifestList
                                                : oci::media_type::kOciIndex;
    for (const PlatformResult& r : results) {
      oci::Descriptor d = r.image.manifest;
      d.platform = r.platform;
      index.manifests.push_back(d);
    }
    index.annotations.insert(opts->index_annotations.begin(), opts->index_annotations.end());
    std::string bytes = oci::serialize(index);
    top = {};
    top.media_type = index.media_type;
    top.digest = store.put_blob(bytes);
    top.size = static_cast<int64_t>(bytes.size());
    image_id = top.digest.str();
  }
  for (const std::string& tag : opts->tags) {
    store.tag(top, tag);
    say("Tagged " + oci::Store::canonical_name(tag));
  }
  write_outputs(*opts, store, top, results, sde, say);
  size_t steps_run = 0, steps_cached = 0;
  for (const PlatformResult& r : results) {
    steps_run += r.built.steps_run;
    steps_cached += r.built.steps_cached;
  }
  for (const TypedSpec& c : opts->cache_to) {
    bool max = c.attr("mode").value_or("min") == "max";
    std::vector<solver::CacheRecord> records;
    std::set<std::string> keys;
    for (const PlatformResult& r : results) {
      for (const solver::CacheRecord& record : max ? r.built.all_records : r.built.target_records) {
        if (keys.insert(record.key).second)
          records.push_back(record);
      }
    }
    oci::Descriptor cache = solver::write_cache_manifest(store, records);
    std::string dest;
    if (c.type == "local") {
      dest = c.attr("dest").value_or("");
      exporter::write_oci_layout(store, cache, {solver::kCacheRefName}, dest);
    } else {
      oci::Reference ref = oci::parse_reference(c.attr("ref").value_or(""));
      dest = ref.str();
      oci::RegistryOptions options = request.registry;
      options.log = [&](const std::string& line) { say(line); };
      oci::push_image(store, cache, ref, options);
    }
    say("Exported cache (" + std::to_string(records.size()) +
        " records, mode=" + (max ? "max" : "min") + ") to " + dest);
  }
  for (const std::string& target : pushes) {
    oci::RegistryOptions options = request.registry;
    options.log = [&](const std::string& line) { say(line); };
    oci::Reference ref = oci::parse_reference(target);
    oci::Digest pushed = oci::push_image(store, top, ref, options);
    say("Pushed " + ref.familiar() + "@" + pushed.str());
    if (sign_key) {
      exporter::sign_registry_image(*sign_key, ref, pushed, options);
      say("Signed " + ref.familiar() + "@" + pushed.str());
    }
  }
  if (!opts->iidfile.empty()) {
    std::ofstream iid(opts->iidfile, std::ios::trunc);
    iid << image_id;
    if (!iid)
      throw Error("cannot write --iidfile " + opts->iidfile);
  }
  if (!opts->metadata_file.empty())
    write_metadata_file(opts->metadata_file, *opts, top, results, multi);
  solver::ProgressEvent done;
  done.kind = solver::ProgressEvent::Kind::kBuildDone;
  done.text = image_id;
  done.detail = top.digest.str();
  done.seconds = elapsed();
  progress->event(done);
  finish.succeeded = true;
  if (opts->progress == "json") {
    io.out << nlohmann::json{{"image", image_id},
                             {"manifest", top.digest.str()},
                             {"steps_run", steps_run},
                             {"steps_cached", steps_cached},
                             {"seconds", elapsed()}}
                  .dump()
           << "\n";
  } else {
    io.out << image_id << "\n";
  }
  return kExitOk;
}

}  // namespace kiln::cli
