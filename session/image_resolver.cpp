#include "image_resolver.hpp"

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/image_source.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registries_conf.hpp"
#include "kiln/oci/registry.hpp"

namespace kiln::session {

ImageResolver::ImageResolver(oci::Store& store, oci::RegistryOptions registry,
                             SessionRequest::PullPolicy pull, solver::ProgressSink* progress)
    : store_(store),
      registry_(std::move(registry)),
      pull_(pull),
      progress_(progress),
      lease_(store.root()) {}

void ImageResolver::say(const std::string& text) {
  if (!progress_)
    return;
  solver::ProgressEvent e;
  e.kind = solver::ProgressEvent::Kind::kMessage;
  e.text = text;
  progress_->event(e);
}

oci::ResolvedImage ImageResolver::resolve(const std::string& ref, const oci::Platform& platform) {
  std::string key = ref + "|" + platform.to_string();
  std::lock_guard lock(mutex_);
  if (auto it = images_.find(key); it != images_.end())
    return it->second;
  oci::ResolvedImage resolved =
      from_registry(ref) ? pull(ref, platform) : oci::resolve_image(store_, ref, platform);
  // A single-platform image (no index to choose from) must be for the platform asked for.
  oci::Platform have = oci::platform_of(resolved.config);
  if (!have.os.empty() && !have.architecture.empty() &&
      !oci::platform_matches(platform, oci::normalize(have))) {
    throw Error("image " + quote(ref) + " is for " + oci::normalize(have).to_string() + ", not " +
                platform.to_string() + " (it is a single-platform image: build or pull one for " +
                platform.to_string() + ", or a multi-platform index)");
  }
  // Keep the image's blobs while this build runs, even if its tag goes away meanwhile.
  lease_.hold_blob(resolved.manifest.digest);
  lease_.hold_blob(resolved.parsed.config.digest);
  for (const oci::Descriptor& layer : resolved.parsed.layers)
    lease_.hold_blob(layer.digest);
  return images_.emplace(key, std::move(resolved)).first->second;
}

frontend::BaseImage ImageResolver::base_image(const std::string& ref,
                                              const oci::Platform& platform) {
  oci::ResolvedImage image = resolve(ref, platform);
  oci::Platform config_platform{image.config.os, image.config.architecture, image.config.variant};
  return {image.config.config.env, image.config.config.on_build,
          image.config.config.shell.has_value(), config_platform, image.manifest.digest};
}

namespace {

std::vector<oci::Platform> index_platforms(const oci::Index& index) {
  std::vector<oci::Platform> out;
  for (const oci::Descriptor& d : index.manifests) {
    if (d.platform && d.platform->os != "unknown" && !d.platform->architecture.empty())
      out.push_back(oci::normalize(*d.platform));
  }
  return out;
}

}  // namespace

std::vector<oci::Platform> ImageResolver::platforms(const std::string& ref) {
  if (oci::has_transport(ref)) {
    throw Error("--all-platforms cannot list the platforms of " + quote(ref) +
                ": name them with --platform");
  }
  std::lock_guard lock(mutex_);
  if (from_registry(ref)) {
    oci::Reference parsed = oci::parse_reference(ref);
    say("Listing the platforms of " + parsed.str());
    oci::RegistryClient client(parsed.domain, registry_);
    oci::RegistryClient::Manifest m =
        client.get_manifest(parsed.path, parsed.digest ? parsed.digest->str() : parsed.tag);
    if (oci::media_type::is_index(m.media_type))
      return index_platforms(oci::parse_index(m.bytes));
    // One image: its config says which platform (the layers are not needed for that).
    oci::Manifest manifest = oci::parse_manifest(m.bytes);
    StringSink config;
    client.get_blob(parsed.path, manifest.config, config);
    return {oci::normalize(oci::platform_of(oci::parse_image_config(config.bytes)))};
  }
  std::optional<oci::TaggedImage> tagged = store_.find(ref);
  if (!tagged)
    throw Error("image " + quote(ref) + " is not in the local store");
  std::string bytes = store_.read_blob(tagged->descriptor.digest);
  if (oci::media_type::is_index(tagged->descriptor.media_type))
    return index_platforms(oci::parse_index(bytes));
  oci::Manifest manifest = oci::parse_manifest(bytes);
  return {oci::normalize(
      oci::platform_of(oci::parse_image_config(store_.read_blob(manifest.config.digest))))};
}

// A name (not a transport, not an image ID) that the store does not have, or any name with
// --pull=always|newer, comes from its registry; with --pull=never nothing does.
bool ImageResolver::from_registry(const std::string& ref) const {
  using Policy = SessionRequest::PullPolicy;
  if (oci::has_transport(ref) || !oci::try_parse_reference(ref))
    return false;
  if (pull_ == Policy::kNever) {
    if (!store_.find(ref)) {
      throw Error("image " + quote(ref) +
                  " is not in the local store, and --pull=never does not fetch it");
    }
    return false;
  }
  return pull_ == Policy::kAlways || pull_ == Policy::kNewer || !store_.find(ref);
}

oci::ResolvedImage ImageResolver::pull(const std::string& ref, const oci::Platform& platform) {
  // A short name goes where registries.conf says (an alias, the search registries), else to
  // docker.io.
  std::vector<oci::Reference> candidates = oci::resolve_pull_name(oci::load_registries_conf(), ref);
  for (size_t i = 0; i + 1 < candidates.size(); ++i) {
    try {
      return pull_one(ref, candidates[i], platform);
    } catch (const Error& e) {
      say("Not in " + candidates[i].domain + ": " + e.what());
    }
  }
  return pull_one(ref, candidates.back(), platform);
}

oci::ResolvedImage ImageResolver::pull_one(const std::string& ref, const oci::Reference& parsed,
                                           const oci::Platform& platform) {
  say("Pulling " + parsed.str() + " for " + platform.to_string());
  oci::RegistryOptions options = registry_;
  options.log = [this](const std::string& line) { say(line); };
  try {
    return oci::pull_image(store_, parsed, platform, options);
  } catch (const Error& e) {
    using Policy = SessionRequest::PullPolicy;
    if (pull_ == Policy::kNewer && store_.find(ref)) {
      say("Using the local " + parsed.str() + ": the registry did not answer (" + e.what() + ")");
      return oci::resolve_image(store_, ref, platform);
    }
    if (pull_ != Policy::kMissing)
      throw;
    throw Error("image " + quote(ref) +
                " is not in the local store, and pulling it failed: " + e.what());
  }
}

}  // namespace kiln::session
