#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>

#include "app.hpp"
#include "build_options.hpp"
#include "containerfile_input.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/exporter.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/oci/manifest.hpp"
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
    throw Error(
        "building for several platforms at once is not supported by this version of "
        "kiln yet; build one --platform at a time");
  }
  if (!opts.sign_key.empty())
    throw Error("--sign-key is not supported by this version of kiln yet");
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

void write_outputs(const BuildCommandOptions& opts, oci::Store& store,
                   const exporter::CommittedImage& image, const solver::BuiltImage& built,
                   const std::optional<int64_t>& sde,
                   const std::function<void(const std::string&)>& say) {
  for (const TypedSpec& o : opts.outputs) {
    std::string dest = o.attr("dest").value_or("");
    if (o.type == "oci") {
      bool tar = ends_with(dest, ".tar") || o.attr("tar").value_or("false") == "true";
      if (tar) {
        exporter::write_oci_archive(store, image.manifest, opts.tags, dest);
      } else {
        exporter::write_oci_layout(store, image.manifest, opts.tags, dest);
      }
    } else if (o.type == "docker") {
      exporter::write_docker_archive(store, image.manifest, opts.tags, dest);
    } else if (o.type == "local") {
      exporter::write_rootfs_directory(built.rootfs(), dest);
    } else if (o.type == "tar") {
      exporter::write_rootfs_tar(built.rootfs(), dest, sde);
    } else if (o.type == "image" || o.type == "registry") {
      continue;  // the store, which every build writes anyway; registry pushes come after
    }
    if (dest != "-")
      say("Wrote " + o.type + " output to " + dest);
  }
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
  if (opts->file != "-") {
    // Read now so that a malformed ignore file fails the build before anything runs.
    ignore = frontend::load_ignore_rules(context, containerfile_path(opts->file, context));
  }

  frontend::BuildOptions build;
  build.build_args = opts->build_args;
  build.target = opts->target;
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

  solver::Builder builder(store, request);
  build.base_image = [&](const std::string& ref, const oci::Platform& platform) {
    return builder.base_image(ref, platform);
  };
  frontend::BuildPlan plan = frontend::plan_build(file, build);
  for (const frontend::Warning& w : plan.warnings)
    say(format_warning(w));
  solver::BuiltImage built = builder.build(plan);

  exporter::ManifestFormat format =
      opts->format == "docker" ? exporter::ManifestFormat::kDocker : exporter::ManifestFormat::kOci;
  exporter::CommittedImage image =
      exporter::commit_image(store, built.config, built.layers, format);
  for (const std::string& tag : opts->tags) {
    store.tag(image.manifest, tag);
    say("Tagged " + oci::Store::canonical_name(tag));
  }
  write_outputs(*opts, store, image, built, sde, say);
  for (const TypedSpec& c : opts->cache_to) {
    bool max = c.attr("mode").value_or("min") == "max";
    const std::vector<solver::CacheRecord>& records =
        max ? built.all_records : built.target_records;
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
    oci::Digest pushed = oci::push_image(store, image.manifest, ref, options);
    say("Pushed " + ref.familiar() + "@" + pushed.str());
  }
  if (!opts->iidfile.empty()) {
    std::ofstream iid(opts->iidfile, std::ios::trunc);
    iid << image.config.str();
    if (!iid)
      throw Error("cannot write --iidfile " + opts->iidfile);
  }
  solver::ProgressEvent done;
  done.kind = solver::ProgressEvent::Kind::kBuildDone;
  done.text = image.config.str();
  done.detail = image.manifest.digest.str();
  done.seconds = elapsed();
  progress->event(done);
  finish.succeeded = true;
  if (opts->progress == "json") {
    io.out << nlohmann::json{{"image", image.config.str()},
                             {"manifest", image.manifest.digest.str()},
                             {"steps_run", built.steps_run},
                             {"steps_cached", built.steps_cached},
                             {"seconds", elapsed()}}
                  .dump()
           << "\n";
  } else {
    io.out << image.config.str() << "\n";
  }
  return kExitOk;
}

}  // namespace kiln::cli
