#include "kiln/session/session.hpp"

#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "attestations.hpp"
#include "image_resolver.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/sbom.hpp"
#include "kiln/frontend/checks.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/referrers.hpp"
#include "kiln/solver/builder.hpp"
#include "kiln/solver/cache_transfer.hpp"
#include "kiln/solver/context_digest.hpp"

namespace kiln::session {
namespace fs = std::filesystem;
namespace {

void say(const SessionRequest& request, const std::string& text) {
  if (!request.solve.progress)
    return;
  solver::ProgressEvent e;
  e.kind = solver::ProgressEvent::Kind::kMessage;
  e.text = text;
  request.solve.progress->event(e);
}

std::vector<oci::Platform> platforms_of(const SessionRequest& request) {
  if (!request.platforms.empty())
    return request.platforms;
  return {oci::host_platform()};
}

frontend::BuildOptions build_options(const SessionRequest& request, const oci::Platform& platform) {
  frontend::BuildOptions options;
  options.build_args = request.build_args;
  options.target = request.target;
  options.named_contexts = request.named_contexts;
  options.first_base = request.first_base;
  options.target_platform = platform;
  return options;
}

// --no-cache-filter names stages the way --target does: an unknown one is an error.
void check_no_cache_filter(const SessionRequest& request, const frontend::BuildPlan& plan) {
  for (const std::string& filter : request.solve.no_cache_filter) {
    bool known = std::any_of(plan.stages.begin(), plan.stages.end(), [&](const auto& stage) {
      return (!stage.name.empty() && stage.name == to_lower(filter)) ||
             std::to_string(stage.index) == filter;
    });
    if (known)
      continue;
    std::vector<std::string> names;
    for (const frontend::Stage& s : plan.stages)
      names.push_back(s.name.empty() ? std::to_string(s.index) : s.name);
    throw Error("--no-cache-filter " + quote(filter) + ": no such stage in " +
                request.file->filename + " (stages: " + join(names, ", ") + ")");
  }
}

// The build checks of the stages this build runs, as warnings; with check=error=true, findings
// stop the build before anything runs (BuildKit fails it at the end).
void run_build_checks(const SessionRequest& request, const frontend::BuildPlan& plan) {
  frontend::CheckOptions checks;
  checks.config_override = check_override(request.build_args);
  checks.stages = std::set<size_t>(plan.order.begin(), plan.order.end());
  checks.ignore = &request.solve.ignore;
  if (!request.solve.ignore.source().empty())
    checks.ignore_file_name = fs::path(request.solve.ignore.source()).filename().string();
  frontend::CheckReport report = frontend::run_checks(*request.file, plan, checks);
  std::set<std::string> rules;
  for (const frontend::CheckFinding& f : report.findings) {
    say(request, "WARNING: " + f.where.to_string() + ": " + f.rule->name + ": " + f.message +
                     "\n  fix: " + f.rule->fix);
    rules.insert(f.rule->name);
  }
  if (report.failed()) {
    throw Error("lint violation found for rules: " +
                join(std::vector<std::string>(rules.begin(), rules.end()), ", ") +
                " (the Containerfile's check=error=true makes build check warnings errors)");
  }
}

frontend::OpGraph plan_one(const SessionRequest& request, const oci::Platform& platform,
                           ImageResolver* images, bool first) {
  frontend::BuildOptions options = build_options(request, platform);
  if (images) {
    options.base_image = [images](const std::string& ref, const oci::Platform& p) {
      return images->base_image(ref, p);
    };
  }
  frontend::BuildPlan plan = frontend::plan_build(*request.file, options);
  if (first) {
    for (const frontend::Warning& w : plan.warnings) {
      if (w.rule.empty())  // a build check's finding: run_checks reports it
        say(request,
            "WARNING: " + (w.where.line ? w.where.to_string() + ": " : std::string()) + w.message);
    }
    run_build_checks(request, plan);
    check_no_cache_filter(request, plan);
  }
  frontend::LowerOptions lower = request.run;
  lower.named_contexts = request.named_contexts;
  return frontend::lower_plan(plan, lower);
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

std::vector<std::shared_ptr<const solver::RemoteCache>> import_caches(
    const SessionRequest& request) {
  std::vector<std::shared_ptr<const solver::RemoteCache>> out;
  for (const CacheLocation& c : request.cache_from) {
    std::shared_ptr<solver::RemoteCache> remote;
    try {
      remote = c.type == CacheLocation::Type::kLocal
                   ? solver::open_layout_cache(c.location)
                   : solver::open_registry_cache(c.location, request.registry);
    } catch (const Error& e) {
      say(request, std::string("WARNING: ") + e.what() + "; building without it");
      continue;
    }
    if (!remote) {
      say(request, "No cache to import at " + c.location);
      continue;
    }
    say(request, "Importing cache from " + remote->source() + ": " +
                     std::to_string(remote->size()) + " records");
    out.push_back(std::move(remote));
  }
  return out;
}

solver::BuildRequest solver_request(const SessionRequest& request,
                                    std::shared_ptr<ImageResolver> images) {
  solver::BuildRequest r = request.solve;
  for (const auto& [name, c] : request.named_contexts) {
    if (c.local)
      r.directory_ignores[c.value] = directory_context_ignore(c.value);
  }
  r.cache_from = import_caches(request);
  r.images = std::move(images);
  r.shared_steps = solver::make_shared_steps();
  return r;
}

struct PlatformResult {
  oci::Platform platform;
  solver::BuiltImage built;
  exporter::CommittedImage image;
};

// Runs every platform's graph at once; steps they share (a BUILDPLATFORM stage whose key does
// not depend on the target) run once.
// The builders stay with the caller: the images' root filesystems (local and tar outputs) live
// as long as they do.
std::vector<PlatformResult> build_all(oci::Store& store, const SessionRequest& request,
                                      const solver::BuildRequest& base,
                                      const std::vector<oci::Platform>& platforms,
                                      const std::vector<frontend::OpGraph>& graphs,
                                      std::vector<std::unique_ptr<solver::Builder>>& builders) {
  bool multi = platforms.size() > 1;
  for (const oci::Platform& platform : platforms) {
    solver::BuildRequest r = base;
    r.platform = platform;
    if (multi)
      r.step_prefix = platform.to_string() + " ";
    builders.push_back(std::make_unique<solver::Builder>(store, std::move(r)));
  }
  std::vector<PlatformResult> results(platforms.size());
  std::vector<std::exception_ptr> errors(platforms.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < platforms.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          results[i].platform = platforms[i];
          results[i].built = builders[i]->build(graphs[i]);
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
  if (failures.size() == 1) {
    std::rethrow_exception(*std::find_if(errors.begin(), errors.end(),
                                         [](const std::exception_ptr& e) { return bool(e); }));
  }
  if (!failures.empty())
    throw Error(std::to_string(failures.size()) + " platforms failed:\n" + join(failures, "\n"));
  for (PlatformResult& r : results) {
    r.image = exporter::commit_image(store, r.built.config, r.built.layers, request.format,
                                     request.manifest_annotations);
  }
  return results;
}

bool has_referrers_api(const oci::Reference& ref, const oci::RegistryOptions& options,
                       const oci::Digest& pushed) {
  oci::RegistryClient client(ref.domain, options);
  return client.referrers(ref.path, pushed).has_value();
}

// --attest-format referrers after a push: each artifact by digest, then listed as a referrer
// of its image (the registry's API, or the fallback tag).
void push_referrers(oci::Store& store, const SessionRequest& request, const oci::Reference& ref,
                    const oci::RegistryOptions& options,
                    const std::vector<std::pair<oci::Digest, oci::Descriptor>>& referrers) {
  oci::RegistryClient client(ref.domain, options);
  for (const auto& [subject, artifact] : referrers) {
    oci::Reference at = ref;
    at.tag.clear();
    at.digest = artifact.digest;
    try {
      oci::push_image(store, artifact, at, options);
      bool api = oci::publish_registry_referrer(client, ref.path, subject, artifact);
      say(request, "Pushed attestation " +
                       artifact.annotations.at(exporter::kPredicateTypeAnnotation) + " for " +
                       subject.str() +
                       (api ? " (referrers API)" : " (tag " + oci::referrers_tag(subject) + ")"));
    } catch (const oci::RegistryError& e) {
      throw Error("pushing attestations to " + ref.familiar() + " failed: " + e.what() +
                  oci::push_failure_advice(e, ref));
    }
  }
}

struct Attached {
  std::vector<oci::Descriptor> index_entries;  // BuildKit's attestation manifests
  std::vector<std::pair<oci::Digest, oci::Descriptor>> referrers;  // (subject, artifact)
};

// SessionRequest::attest: each platform's SBOM and provenance, written as attestation manifests
// or as referrer artifacts (none when nothing is asked for).
Attached attach_attestations(oci::Store& store, const SessionRequest& request,
                             ImageResolver& images, const std::vector<frontend::OpGraph>& graphs,
                             std::vector<PlatformResult>& results, const std::string& started) {
  Attached attached;
  if (!request.attest.any())
    return attached;
  std::string created = solver::build_timestamp(request.solve.source_date_epoch);
  std::string finished = solver::build_timestamp(std::nullopt);
  std::string context_digest;
  std::error_code ec;
  if (request.attest.provenance && fs::is_directory(request.solve.context, ec)) {
    context_digest = solver::context_digest(store.layout().context_caches(), request.solve.context,
                                            request.solve.ignore);
  }
  std::string invocation =
      oci::sha256_of(started + finished + std::to_string(::getpid())).hex().substr(0, 32);
  for (size_t i = 0; i < results.size(); ++i) {
    PlatformResult& r = results[i];
    std::string subject =
        request.tags.empty()
            ? std::string("_")
            : image_purl(oci::Store::canonical_name(request.tags.front()), r.platform);
    std::vector<exporter::Attestation> list;
    if (request.attest.sbom) {
      say(request, "Scanning " + r.platform.to_string() + " for its SBOM");
      exporter::SbomScan scan = exporter::scan_rootfs(r.built.rootfs());
      exporter::SbomSubject about{request.tags.empty() ? "image" : request.tags.front(), created,
                                  std::string("kiln-") + KILN_VERSION};
      if (request.attest.cyclonedx)
        list.push_back({exporter::kCycloneDxPredicate, exporter::cyclonedx_document(scan, about)});
      else
        list.push_back({exporter::kSpdxPredicate, exporter::spdx_document(scan, about)});
      if (!request.attest.sbom_output.empty())
        write_user_file(request.attest.sbom_output, list.back().predicate.dump(2) + "\n");
      if (!request.attest.sbom_purl_output.empty()) {
        std::string purls;
        for (const exporter::SbomPackage& p : scan.packages)
          purls += p.purl + "\n";
        write_user_file(request.attest.sbom_purl_output, purls);
      }
    }
    if (request.attest.provenance) {
      ProvenanceInputs in;
      in.platform = r.platform;
      in.graph = &graphs.at(i);
      std::set<std::string> seen;
      for (const frontend::Op& op : graphs.at(i).ops) {
        const auto* source = op.as<frontend::SourceOp>();
        if (!source || source->kind != frontend::SourceOp::Kind::kImage)
          continue;
        oci::Digest digest = source->manifest
                                 ? *source->manifest
                                 : images.resolve(source->image, source->platform).manifest.digest;
        std::string uri = image_purl(source->image, source->platform);
        if (seen.insert(uri + digest.str()).second)
          in.dependencies.push_back({uri, digest});
      }
      in.timings = r.built.timings;
      in.context_digest = context_digest;
      in.started = started;
      in.finished = finished;
      in.invocation_id = invocation;
      list.push_back({exporter::kSlsaProvenanceV1, provenance_predicate(request, in)});
    }
    if (!request.attest.referrers) {
      attached.index_entries.push_back(
          exporter::write_attestation_manifest(store, r.image.manifest, subject, list));
    }
    // The artifacts too when something will publish them: --attest-format referrers, or a push
    // (a registry with the referrers API gets them as well).
    if (!request.attest.referrers && request.push.empty())
      continue;
    for (const exporter::Attestation& a : list) {
      oci::Descriptor artifact =
          exporter::write_attestation_artifact(store, r.image.manifest, subject, a, created);
      attached.referrers.emplace_back(r.image.manifest.digest, artifact);
      if (!request.attest.referrers)
        continue;
      for (const std::string& tag : request.tags) {
        oci::Reference ref = oci::parse_reference(oci::Store::canonical_name(tag));
        ref.tag.clear();
        ref.digest.reset();
        oci::add_store_referrer(store, ref.familiar(), r.image.manifest.digest, artifact);
      }
    }
  }
  return attached;
}

// "linux/arm64/v8" → "linux_arm64_v8", BuildKit's directory name for a platform's files.
std::string platform_dir(const oci::Platform& p) {
  std::string out = p.to_string();
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

}  // namespace

namespace {

// Outputs that hold one platform only.
void check_outputs_hold(const SessionRequest& request, size_t platforms) {
  if (platforms <= 1)
    return;
  for (const Output& o : request.outputs) {
    if (o.type == Output::Type::kDockerArchive)
      throw Error("-o type=docker cannot hold " + std::to_string(platforms) +
                  " platforms (a docker-archive has no index): choose one with --platform, or "
                  "use -o type=oci");
    if (o.type == Output::Type::kTar)
      throw Error(
          "-o type=tar writes one filesystem: choose one --platform, or use "
          "-o type=local (a directory per platform)");
  }
}

}  // namespace

void validate(const SessionRequest& request, bool signing) {
  check_outputs_hold(request, request.platforms.size());
  if ((signing || request.sign_key) && request.push.empty()) {
    throw Error(
        "--sign-key signs what the build pushes: add --push (or -o type=registry), or "
        "sign a local image with `kiln sign`");
  }
  for (const PushTarget& target : request.push) {
    oci::parse_reference(target.name);  // a malformed name fails before the build
    // BuildKit refuses it too ("can't push tagged ref ... by digest"): a push by digest makes
    // no tag, so the name's would be silently dropped.
    std::string_view last = std::string_view(target.name).substr(target.name.rfind('/') + 1);
    if (target.by_digest && last.find_first_of(":@") != std::string_view::npos) {
      throw Error("push-by-digest to " + quote(target.name) +
                  ": name a repository without :TAG or @DIGEST (a push by digest makes no tag)");
    }
  }
  for (const std::string& tag : request.tags)
    oci::Store::canonical_name(tag);
  if ((!request.attest.sbom_output.empty() || !request.attest.sbom_purl_output.empty()) &&
      request.platforms.size() > 1) {
    throw Error(
        "--sbom-output and --sbom-purl-output take the SBOM of one platform: build the "
        "platforms one at a time, or read each platform's SBOM attestation");
  }
  if (request.attest.any() && request.attest.referrers && request.tags.empty() &&
      request.push.empty()) {
    throw Error(
        "--attest-format referrers keeps attestations under the image's name: give -t "
        "(or --push)");
  }
  if (request.attest.any() && request.format == exporter::ManifestFormat::kDocker) {
    throw Error(
        "attestations (--sbom, --provenance, --attest) are stored in an OCI image index: "
        "drop --format docker");
  }
}

std::vector<frontend::OpGraph> plan(const SessionRequest& request) {
  std::vector<frontend::OpGraph> graphs;
  std::vector<oci::Platform> platforms = platforms_of(request);
  for (size_t i = 0; i < platforms.size(); ++i)
    graphs.push_back(plan_one(request, platforms[i], nullptr, i == 0));
  return graphs;
}

// --all-platforms: the platforms every base image of the stages the target needs offers, in
// the first base's order.
std::vector<oci::Platform> shared_base_platforms(const SessionRequest& request,
                                                 ImageResolver& images) {
  frontend::BuildPlan plan =
      frontend::plan_build(*request.file, build_options(request, oci::host_platform()));
  std::vector<oci::Platform> shared;
  std::vector<std::string> described;
  bool first = true;
  std::set<std::string> seen_refs;
  for (size_t index : plan.order) {
    const frontend::Stage& stage = plan.stages[index];
    if (stage.base_kind != frontend::BaseKind::kImage || stage.platform_explicit ||
        !seen_refs.insert(stage.base_image).second) {
      continue;
    }
    std::vector<oci::Platform> offered = images.platforms(stage.base_image);
    std::vector<std::string> names;
    for (const oci::Platform& p : offered)
      names.push_back(p.to_string());
    described.push_back(stage.base_image + " (" + join(names, ", ") + ")");
    if (first) {
      for (const oci::Platform& p : offered) {
        if (std::none_of(shared.begin(), shared.end(),
                         [&](const oci::Platform& q) { return q.to_string() == p.to_string(); }))
          shared.push_back(p);
      }
      first = false;
      continue;
    }
    std::erase_if(shared, [&](const oci::Platform& p) {
      return std::none_of(offered.begin(), offered.end(),
                          [&](const oci::Platform& q) { return q.to_string() == p.to_string(); });
    });
  }
  if (first) {
    throw Error("--all-platforms: the stages " + request.file->filename +
                " builds start from scratch or name their platform, so no base image says "
                "which platforms to build: give --platform");
  }
  if (shared.empty()) {
    throw Error("--all-platforms: the base images share no platform: " + join(described, "; "));
  }
  return shared;
}

namespace {

void check_manifest_list(oci::Store& store, const std::string& name) {
  std::optional<oci::TaggedImage> existing = store.find(oci::Store::canonical_name(name));
  if (existing && existing->name == oci::Store::canonical_name(name) &&
      !oci::media_type::is_index(existing->descriptor.media_type)) {
    throw Error("--manifest " + name + ": " + existing->name +
                " is an image, not a manifest list; choose another name or kiln rmi it");
  }
}

// --manifest: `entries` replace the list's entries for the same platforms (or digests).
oci::Descriptor add_to_manifest_list(oci::Store& store, const std::string& name,
                                     const std::vector<oci::Descriptor>& entries,
                                     exporter::ManifestFormat format) {
  return store.update_tag(name, [&](const std::optional<oci::Descriptor>& current) {
    oci::Index list;
    if (current) {
      if (!oci::media_type::is_index(current->media_type)) {
        throw Error("--manifest " + name +
                    ": it is an image now, not a manifest list (it was "
                    "tagged while this build ran)");
      }
      list = oci::parse_index(store.read_blob(current->digest));
    } else {
      list.media_type = format == exporter::ManifestFormat::kDocker
                            ? oci::media_type::kDockerManifestList
                            : oci::media_type::kOciIndex;
    }
    for (const oci::Descriptor& entry : entries) {
      std::erase_if(list.manifests, [&](const oci::Descriptor& d) {
        return d.digest == entry.digest || (d.platform && entry.platform &&
                                            oci::normalize(*d.platform).to_string() ==
                                                oci::normalize(*entry.platform).to_string());
      });
      list.manifests.push_back(entry);
    }
    return store.put_index(list);
  });
}

}  // namespace

frontend::BuildPlan plan_without_building(oci::Store* store, const SessionRequest& request,
                                          bool all_stages) {
  frontend::BuildOptions options = build_options(request, platforms_of(request).front());
  std::shared_ptr<ImageResolver> images;
  if (store) {
    images = std::make_shared<ImageResolver>(*store, request.registry,
                                             SessionRequest::PullPolicy::kNever, nullptr);
    options.base_image = [images](const std::string& ref, const oci::Platform& p) {
      try {
        return images->base_image(ref, p);
      } catch (const Error&) {
        frontend::BaseImage unknown;
        unknown.known = false;
        return unknown;
      }
    };
  }
  if (all_stages) {
    std::set<size_t> every;
    size_t stages =
        std::count_if(request.file->instructions.begin(), request.file->instructions.end(),
                      [](const frontend::Instruction& ins) {
                        return ins.kind == frontend::InstructionKind::kFrom;
                      });
    for (size_t i = 0; i < stages; ++i)
      every.insert(i);
    options.resolve_stages = every;
  }
  return frontend::plan_build(*request.file, options);
}

std::optional<std::string> check_override(
    const std::vector<std::pair<std::string, std::string>>& build_args) {
  std::optional<std::string> value;
  for (const auto& [name, v] : build_args) {
    if (name == "BUILDKIT_DOCKERFILE_CHECK")
      value = v;
  }
  return value;
}

SessionResult run(oci::Store& store, const SessionRequest& request) {
  std::string started = solver::build_timestamp(std::nullopt);
  validate(request);
  if (request.manifest_list)
    check_manifest_list(store, *request.manifest_list);
  auto images = std::make_shared<ImageResolver>(store, request.registry, request.pull,
                                                request.solve.progress);
  std::vector<oci::Platform> platforms =
      request.all_platforms ? shared_base_platforms(request, *images) : platforms_of(request);
  check_outputs_hold(request, platforms.size());  // with --all-platforms, what was found
  std::vector<frontend::OpGraph> graphs;
  for (size_t i = 0; i < platforms.size(); ++i)
    graphs.push_back(plan_one(request, platforms[i], images.get(), i == 0));
  // Every platform is checked before any of them starts a step.
  for (const frontend::OpGraph& graph : graphs)
    solver::Builder::check(graph);
  solver::BuildRequest base = solver_request(request, images);
  std::vector<std::unique_ptr<solver::Builder>> builders;
  std::vector<PlatformResult> results =
      build_all(store, request, base, platforms, graphs, builders);
  bool multi = results.size() > 1;
  Attached attached = attach_attestations(store, request, *images, graphs, results, started);
  const std::vector<oci::Descriptor>& attestations = attached.index_entries;

  // One platform: its manifest. Several, or attestations: an index, which tags and outputs carry.
  SessionResult out;
  out.top = results.front().image.manifest;
  out.image_id = results.front().image.config.str();
  if (multi || !attestations.empty()) {
    oci::Index index;
    index.media_type = request.format == exporter::ManifestFormat::kDocker
                           ? oci::media_type::kDockerManifestList
                           : oci::media_type::kOciIndex;
    for (const PlatformResult& r : results) {
      oci::Descriptor d = r.image.manifest;
      d.platform = r.platform;
      index.manifests.push_back(d);
    }
    // BuildKit's order: every image manifest, then their attestation manifests.
    index.manifests.insert(index.manifests.end(), attestations.begin(), attestations.end());
    index.annotations.insert(request.index_annotations.begin(), request.index_annotations.end());
    out.top = store.put_index(index);
    out.image_id = out.top.digest.str();
  }
  for (const std::string& tag : request.tags) {
    store.tag(out.top, tag);
    say(request, "Tagged " + oci::Store::canonical_name(tag));
  }
  if (request.manifest_list) {
    std::vector<oci::Descriptor> entries;
    for (const PlatformResult& r : results) {
      oci::Descriptor d = r.image.manifest;
      d.platform = r.platform;
      entries.push_back(d);
    }
    oci::Descriptor list =
        add_to_manifest_list(store, *request.manifest_list, entries, request.format);
    say(request, "Added to manifest list " + oci::Store::canonical_name(*request.manifest_list) +
                     " (" + list.digest.str() + ")");
  }
  for (const Output& o : request.outputs) {
    switch (o.type) {
      case Output::Type::kOciLayout:
        exporter::write_oci_layout(store, out.top, request.tags, o.dest);
        break;
      case Output::Type::kOciArchive:
        exporter::write_oci_archive(store, out.top, request.tags, o.dest);
        break;
      case Output::Type::kDockerArchive:
        exporter::write_docker_archive(store, results.front().image.manifest, request.tags, o.dest);
        break;
      case Output::Type::kLocal:
        if (!multi) {
          exporter::write_rootfs_directory(results.front().built.rootfs(), o.dest);
        } else {
          for (PlatformResult& r : results)
            exporter::write_rootfs_directory(r.built.rootfs(), o.dest / platform_dir(r.platform));
        }
        break;
      case Output::Type::kTar:
        exporter::write_rootfs_tar(results.front().built.rootfs(), o.dest,
                                   request.solve.source_date_epoch);
        break;
    }
    static constexpr const char* kNames[] = {"oci", "oci", "docker", "local", "tar"};
    if (o.dest != "-")
      say(request, std::string("Wrote ") + kNames[static_cast<int>(o.type)] + " output to " +
                       o.dest.string());
  }
  for (const PlatformResult& r : results) {
    out.steps_run += r.built.steps_run;
    out.steps_cached += r.built.steps_cached;
    out.explanations.insert(out.explanations.end(), r.built.explanations.begin(),
                            r.built.explanations.end());
  }
  for (const CacheLocation& c : request.cache_to) {
    std::vector<oci::CacheRecord> records;
    std::set<std::string> keys;
    for (const PlatformResult& r : results) {
      for (const oci::CacheRecord& record : c.max ? r.built.all_records : r.built.target_records) {
        if (keys.insert(record.key).second)
          records.push_back(record);
      }
    }
    oci::Descriptor cache = solver::write_cache_manifest(store, records);
    if (c.type == CacheLocation::Type::kLocal) {
      exporter::write_oci_layout(store, cache, {solver::kCacheRefName}, c.location);
    } else {
      oci::RegistryOptions options = request.registry;
      options.log = [&](const std::string& line) { say(request, line); };
      oci::push_image(store, cache, oci::parse_reference(c.location), options);
    }
    say(request, "Exported cache (" + std::to_string(records.size()) +
                     " records, mode=" + (c.max ? "max" : "min") + ") to " + c.location);
  }
  for (const PushTarget& target : request.push) {
    oci::RegistryOptions options = request.registry;
    options.log = [&](const std::string& line) { say(request, line); };
    oci::Reference ref = oci::parse_reference(target.name);
    if (target.by_digest)
      ref.tag.clear();  // parse_reference's "latest": push_image then pushes by digest
    oci::Digest pushed;
    try {
      pushed = oci::push_image(store, out.top, ref, options);
    } catch (const oci::RegistryError& e) {
      throw Error("push to " + ref.familiar() + " failed: " + e.what() +
                  oci::push_failure_advice(e, ref));
    }
    say(request, "Pushed " + ref.familiar() + "@" + pushed.str() +
                     (target.by_digest ? " (by digest, no tag)" : ""));
    // With --attest-format referrers always; else where the registry has the referrers API
    // (the attestation manifests in the index are pushed either way).
    if (!attached.referrers.empty() &&
        (request.attest.referrers || has_referrers_api(ref, options, pushed))) {
      push_referrers(store, request, ref, options, attached.referrers);
    }
    if (request.sign_key) {
      exporter::sign_registry_image(*request.sign_key, ref, pushed, options);
      say(request, "Signed " + ref.familiar() + "@" + pushed.str());
    }
  }
  if (!request.metadata_file.empty()) {
    // What buildx writes for an image build, so CI scripts can read the digest.
    nlohmann::ordered_json meta;
    meta["containerimage.digest"] = out.top.digest.str();
    meta["containerimage.descriptor"] = {{"mediaType", out.top.media_type},
                                         {"digest", out.top.digest.str()},
                                         {"size", out.top.size}};
    if (!multi)
      meta["containerimage.config.digest"] = results.front().image.config.str();
    // The names as buildx records them: the tags and where the image was pushed, a push by
    // digest as the repository given (its reference: that name, "@", containerimage.digest).
    std::vector<std::string> names;
    auto add_name = [&](const std::string& name) {
      if (std::find(names.begin(), names.end(), name) == names.end())
        names.push_back(name);
    };
    for (const std::string& tag : request.tags)
      add_name(oci::Store::canonical_name(tag));
    for (const PushTarget& target : request.push)
      add_name(target.by_digest ? target.name : oci::Store::canonical_name(target.name));
    if (!names.empty())
      meta["image.name"] = join(names, ",");
    write_user_file(request.metadata_file, meta.dump(2) + "\n");
  }
  return out;
}

}  // namespace kiln::session
