#include "kiln/oci/image_source.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/layer_blob.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/tar_extract.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

// A path an archive or layout names (manifest.json's Config and Layers, blobs/ALG/HEX), opened
// for reading beneath `dir` and nowhere else: an absolute name, a ".." that climbs out, or a
// symlink that leads out (absolute, or through "..") is an error naming the path, and so is
// anything but a regular file. Archives are hostile input; the host's files must not become
// image content.
UniqueFd open_beneath(const fs::path& dir, const std::string& rel, const std::string& what) {
  if (rel.empty() || rel.front() == '/') {
    throw Error(what + ": " + quote(rel) + " is not a path inside the archive");
  }
  UniqueFd dirfd = open_or_throw(dir, O_PATH | O_DIRECTORY);
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = openat2_retrying(dirfd.get(), rel.c_str(), how);
  if (fd < 0) {
    if (errno == EXDEV || errno == ELOOP) {
      throw Error(what + ": " + quote(rel) +
                  " leads outside the archive (through \"..\" or a symbolic link)");
    }
    throw Error(what + ": " + quote(rel) + ": " + std::strerror(errno));
  }
  UniqueFd file(static_cast<int>(fd));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw Error(what + ": " + quote(rel) + " is not a regular file in the archive");
  // O_NONBLOCK only kept a fifo from blocking the open.
  ::fcntl(file.get(), F_SETFL, 0);
  return file;
}

// Copies a file of an archive or layout into the store, verifying it against `expected` when
// given.
Digest import_file(Store& store, const fs::path& dir, const std::string& rel,
                   const std::optional<Digest>& expected, const std::string& what) {
  if (expected && store.has_blob(*expected))
    return *expected;
  UniqueFd fd = open_beneath(dir, rel, what);
  auto writer = store.begin_blob();
  read_chunks(fd.get(), what + ": " + rel,
              [&](const char* data, size_t size) { writer->write(data, size); });
  try {
    return writer->commit(expected);
  } catch (const Error& e) {
    throw Error(what + ": " + rel + ": " + e.what());
  }
}

std::string read_beneath(const fs::path& dir, const std::string& rel, const std::string& what) {
  UniqueFd fd = open_beneath(dir, rel, what);
  return read_all(fd.get(), what + ": " + rel);
}

std::pair<std::string, std::string> split_path_and_tag(std::string_view rest) {
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos)
    return {std::string(rest), ""};
  return {std::string(rest.substr(0, colon)), std::string(rest.substr(colon + 1))};
}

// Picks the manifest for `platform` out of an index read by `read`.
template <typename ReadBlob>
Descriptor choose_platform(const Descriptor& top, const ReadBlob& read, const Platform& platform,
                           const std::string& what) {
  if (!media_type::is_index(top.media_type))
    return top;
  Index index = parse_index(read(top.digest));
  if (std::optional<Descriptor> chosen = find_platform_manifest(index, platform))
    return choose_platform(*chosen, read, platform, what);
  throw Error(what + " has no image for platform " + platform.to_string() +
              " (it has: " + platforms_in(index) + ")");
}

ResolvedImage finish(Store& store, std::string source, Descriptor manifest) {
  ResolvedImage image;
  image.source = std::move(source);
  image.manifest = std::move(manifest);
  image.parsed = parse_manifest(store.read_blob(image.manifest.digest));
  image.config = parse_image_config(store.read_blob(image.parsed.config.digest));
  return image;
}

ResolvedImage from_layout(Store& store, const fs::path& dir, const std::string& tag,
                          const Platform& platform, const std::string& what) {
  if (!fs::exists(fs::symlink_status(dir / "index.json"))) {
    throw Error(what + ": " + dir.string() + " is not an OCI image layout (no index.json)");
  }
  Index index = parse_index(read_beneath(dir, "index.json", what));
  std::optional<Descriptor> top;
  std::vector<std::string> names;
  for (const Descriptor& d : index.manifests) {
    auto it = d.annotations.find(kRefNameAnnotation);
    std::string name = it == d.annotations.end() ? "" : it->second;
    if (!name.empty())
      names.push_back(name);
    if (tag.empty() ? index.manifests.size() == 1 : name == tag)
      top = d;
  }
  if (!top) {
    if (tag.empty()) {
      throw Error(what + ": the layout holds " + std::to_string(index.manifests.size()) +
                  " images; name one as " + what + ":TAG (tags: " + join(names, ", ") + ")");
    }
    throw Error(what + ": no image tagged " + quote(tag) + " in " + dir.string() +
                " (tags: " + join(names, ", ") + ")");
  }
  auto blob = [&](const Digest& d) { return "blobs/" + d.algorithm() + "/" + d.hex(); };
  auto read = [&](const Digest& d) {
    Digest copied = import_file(store, dir, blob(d), d, what);
    return store.read_blob(copied);
  };
  Descriptor manifest = choose_platform(*top, read, platform, what);
  Manifest parsed = parse_manifest(read(manifest.digest));
  import_file(store, dir, blob(parsed.config.digest), parsed.config.digest, what);
  for (const Descriptor& layer : parsed.layers)
    import_file(store, dir, blob(layer.digest), layer.digest, what);
  return finish(store, what, manifest);
}

// One manifest.json entry of an extracted docker archive into the store, as an OCI manifest.
// Everything is checked before anything enters the store.
Descriptor import_docker_entry(Store& store, const fs::path& dir, const nlohmann::json& entry,
                               const std::string& what) {
  if (!entry.is_object() || !entry.contains("Config") || !entry["Config"].is_string() ||
      !entry.contains("Layers") || !entry["Layers"].is_array()) {
    throw Error(what + ": manifest.json entry lacks Config or Layers");
  }
  std::string config_path = entry["Config"].get<std::string>();
  std::vector<std::string> layer_paths;
  for (const auto& layer : entry["Layers"]) {
    if (!layer.is_string())
      throw Error(what + ": manifest.json lists a layer that is not a path");
    layer_paths.push_back(layer.get<std::string>());
  }
  // Everything is checked before anything enters the store: the config parses, and each layer's
  // uncompressed content is the diff ID the config gives it.
  std::string config_bytes = read_beneath(dir, config_path, what);
  ImageConfig parsed_config;
  try {
    parsed_config = parse_image_config(config_bytes);
  } catch (const Error& e) {
    throw Error(what + ": config " + quote(config_path) + ": " + e.what());
  }
  if (layer_paths.size() != parsed_config.diff_ids.size()) {
    throw Error(what + ": the config lists " + std::to_string(parsed_config.diff_ids.size()) +
                " layers but manifest.json has " + std::to_string(layer_paths.size()));
  }
  for (size_t i = 0; i < layer_paths.size(); ++i) {
    UniqueFd fd = open_beneath(dir, layer_paths[i], what);
    Digest actual = uncompressed_digest(fd.get(), what + ": layer " + quote(layer_paths[i]));
    if (actual != parsed_config.diff_ids[i]) {
      throw Error(what + ": layer " + quote(layer_paths[i]) + " has diff ID " + actual.str() +
                  ", but the config says " + parsed_config.diff_ids[i].str() +
                  "; nothing was imported");
    }
  }
  Manifest manifest;
  manifest.media_type = media_type::kOciManifest;
  Digest config = store.put_blob(config_bytes);
  manifest.config = {
      media_type::kOciConfig, config, static_cast<int64_t>(config_bytes.size()), {}, {}, {}, {}};
  for (const std::string& path : layer_paths) {
    Digest digest = import_file(store, dir, path, std::nullopt, what);
    // Layers in a docker archive are uncompressed tars (newer docker writes them as OCI blobs,
    // still uncompressed); the media type says so.
    manifest.layers.push_back({media_type::kOciLayer,
                               digest,
                               static_cast<int64_t>(fs::file_size(store.blob_path(digest))),
                               {},
                               {},
                               {},
                               {}});
  }
  std::string bytes = serialize(manifest);
  Digest digest = store.put_blob(bytes);
  return {media_type::kOciManifest, digest, static_cast<int64_t>(bytes.size()), {}, {}, {}, {}};
}

ResolvedImage from_docker_archive(Store& store, const fs::path& file, const std::string& name,
                                  const std::string& what) {
  TempDir dir;
  extract_tar(file, dir.path(), what + ": " + file.string());
  nlohmann::json entries;
  try {
    entries = nlohmann::json::parse(read_beneath(dir.path(), "manifest.json", what));
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + ": manifest.json is not valid JSON: " + e.what());
  }
  if (!entries.is_array() || entries.empty()) {
    throw Error(what + ": manifest.json lists no images");
  }
  const nlohmann::json* chosen = &entries[0];
  if (!name.empty()) {
    chosen = nullptr;
    std::string wanted = Store::canonical_name(name);
    for (const auto& e : entries) {
      for (const auto& tag : e.value("RepoTags", nlohmann::json::array())) {
        if (tag.is_string() && Store::canonical_name(tag.get<std::string>()) == wanted)
          chosen = &e;
      }
    }
    if (!chosen)
      throw Error(what + ": no image tagged " + quote(name));
  }
  return finish(store, what, import_docker_entry(store, dir.path(), *chosen, what));
}

}  // namespace

namespace {

// `d` and everything it references, from an extracted layout into the store (children first:
// a manifest is stored after its blobs).
void import_tree(Store& store, const fs::path& dir, const Descriptor& d, const std::string& what,
                 int depth = 0) {
  if (depth > 4)
    throw Error(what + ": indexes are nested too deep");
  auto blob = [&](const Digest& digest) {
    return "blobs/" + digest.algorithm() + "/" + digest.hex();
  };
  std::string bytes = read_beneath(dir, blob(d.digest), what);
  if (sha256_of(bytes) != d.digest)
    throw Error(what + ": " + blob(d.digest) + " does not match its digest");
  if (media_type::is_index(d.media_type)) {
    for (const Descriptor& child : parse_index(bytes).manifests)
      import_tree(store, dir, child, what, depth + 1);
  } else if (media_type::is_manifest(d.media_type)) {
    Manifest m = parse_manifest(bytes);
    import_file(store, dir, blob(m.config.digest), m.config.digest, what);
    for (const Descriptor& layer : m.layers)
      import_file(store, dir, blob(layer.digest), layer.digest, what);
  } else {
    import_file(store, dir, blob(d.digest), d.digest, what);
    return;
  }
  store.put_blob(bytes);
}

}  // namespace

std::vector<LoadedImage> load_images(Store& store, const fs::path& archive) {
  std::string what = archive.string();
  std::optional<TempDir> extracted;
  fs::path dir = archive;
  std::error_code ec;
  if (!fs::is_directory(archive, ec)) {
    if (!fs::exists(archive, ec))
      throw Error(what + " does not exist");
    extracted.emplace();
    extract_tar(archive, extracted->path(), what);
    dir = extracted->path();
  }
  std::vector<LoadedImage> out;
  if (fs::exists(fs::symlink_status(dir / "index.json"))) {
    Index index = parse_index(read_beneath(dir, "index.json", what));
    for (const Descriptor& d : index.manifests) {
      import_tree(store, dir, d, what);
      LoadedImage image;
      image.descriptor = d;
      image.descriptor.annotations.clear();
      auto it = d.annotations.find(kRefNameAnnotation);
      // A whole reference names the image; a bare tag ("latest") names nothing by itself.
      if (it != d.annotations.end() && it->second.find_first_of(":/@") != std::string::npos &&
          try_parse_reference(it->second))
        image.names.push_back(it->second);
      out.push_back(std::move(image));
    }
    return out;
  }
  if (!fs::exists(fs::symlink_status(dir / "manifest.json")))
    throw Error(what +
                " is neither a docker-archive (manifest.json) nor an OCI archive or layout "
                "(index.json)");
  nlohmann::json entries;
  try {
    entries = nlohmann::json::parse(read_beneath(dir, "manifest.json", what));
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + ": manifest.json is not valid JSON: " + e.what());
  }
  if (!entries.is_array() || entries.empty())
    throw Error(what + ": manifest.json lists no images");
  for (const nlohmann::json& entry : entries) {
    LoadedImage image;
    image.descriptor = import_docker_entry(store, dir, entry, what);
    if (entry.is_object() && entry.contains("RepoTags") && entry["RepoTags"].is_array()) {
      for (const nlohmann::json& tag : entry["RepoTags"]) {
        if (tag.is_string())
          image.names.push_back(tag.get<std::string>());
      }
    }
    out.push_back(std::move(image));
  }
  return out;
}

bool has_transport(std::string_view ref) {
  return starts_with(ref, "oci:") || starts_with(ref, "oci-archive:") ||
         starts_with(ref, "docker-archive:");
}

ResolvedImage resolve_image(Store& store, std::string_view ref, const Platform& platform) {
  std::string what(ref);
  if (starts_with(ref, "oci:")) {
    auto [dir, tag] = split_path_and_tag(ref.substr(4));
    return from_layout(store, dir, tag, platform, what);
  }
  if (starts_with(ref, "oci-archive:")) {
    auto [file, tag] = split_path_and_tag(ref.substr(12));
    TempDir dir;
    extract_tar(file, dir.path(), what + ": " + file);
    return from_layout(store, dir.path(), tag, platform, what);
  }
  if (starts_with(ref, "docker-archive:")) {
    auto [file, name] = split_path_and_tag(ref.substr(15));
    return from_docker_archive(store, file, name, what);
  }
  std::optional<TaggedImage> found = store.find(ref);
  if (!found) {
    throw Error("image " + quote(ref) + " is not in the local store " + store.root().string() +
                " (build it with -t, pull it from a registry, or name a layout or archive with "
                "oci:DIR, oci-archive:FILE or docker-archive:FILE)");
  }
  auto read = [&](const Digest& d) { return store.read_blob(d); };
  Descriptor manifest = choose_platform(found->descriptor, read, platform, what);
  return finish(store, what, manifest);
}

}  // namespace kiln::oci
