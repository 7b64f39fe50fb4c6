#include "kiln/oci/image_source.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/media_types.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

// Copies a file into the store, verifying it against `expected` when given.
Digest import_file(Store& store, const fs::path& path, const std::optional<Digest>& expected,
                   const std::string& what) {
  if (expected && store.has_blob(*expected))
    return *expected;
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  auto writer = store.begin_blob();
  read_chunks(fd.get(), what + ": " + path.string(),
              [&](const char* data, size_t size) { writer->write(data, size); });
  try {
    return writer->commit(expected);
  } catch (const Error& e) {
    throw Error(what + ": " + path.string() + ": " + e.what());
  }
}

// Extracts a tar archive (any compression) into `dir`, refusing entries that leave it.
void extract_archive(const fs::path& archive_path, const fs::path& dir, const std::string& what) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  struct archive* out = archive_write_disk_new();
  archive_write_disk_set_options(out,
                                 ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  auto cleanup = [&] {
    archive_read_free(a);
    archive_write_free(out);
  };
  if (archive_read_open_filename(a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    std::string err = archive_error_string(a) ? archive_error_string(a) : "cannot open";
    cleanup();
    throw Error(what + ": " + archive_path.string() + ": " + err);
  }
  struct archive_entry* entry = nullptr;
  int r;
  while ((r = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
    // Absolute names are taken relative to `dir`; ".." is refused by SECURE_NODOTDOT.
    auto inside = [&](const char* name) {
      std::string_view n(name);
      while (n.starts_with('/'))
        n.remove_prefix(1);
      return (dir / n).string();
    };
    std::string path = inside(archive_entry_pathname(entry));
    archive_entry_set_pathname(entry, path.c_str());
    if (const char* link = archive_entry_hardlink(entry)) {
      std::string target = inside(link);
      archive_entry_set_hardlink(entry, target.c_str());
    }
    if (archive_write_header(out, entry) != ARCHIVE_OK) {
      std::string err = archive_error_string(out) ? archive_error_string(out) : "cannot extract";
      cleanup();
      throw Error(what + ": " + archive_path.string() + ": " + err);
    }
    const void* buf;
    size_t size;
    la_int64_t offset;
    int data;
    while ((data = archive_read_data_block(a, &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out, buf, size, offset) != ARCHIVE_OK) {
        data = ARCHIVE_FATAL;
        break;
      }
    }
    if (data != ARCHIVE_EOF || archive_write_finish_entry(out) != ARCHIVE_OK) {
      std::string err = archive_error_string(a) ? archive_error_string(a) : "cannot extract data";
      cleanup();
      throw Error(what + ": " + archive_path.string() + ": " + err);
    }
  }
  if (r != ARCHIVE_EOF) {
    std::string err = archive_error_string(a) ? archive_error_string(a) : "corrupt archive";
    cleanup();
    throw Error(what + ": " + archive_path.string() + ": " + err);
  }
  cleanup();
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
  if (!fs::exists(dir / "index.json")) {
    throw Error(what + ": " + dir.string() + " is not an OCI image layout (no index.json)");
  }
  Index index = parse_index(read_file(dir / "index.json"));
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
  auto blob = [&](const Digest& d) { return dir / "blobs" / d.algorithm() / d.hex(); };
  auto read = [&](const Digest& d) {
    Digest copied = import_file(store, blob(d), d, what);
    return store.read_blob(copied);
  };
  Descriptor manifest = choose_platform(*top, read, platform, what);
  Manifest parsed = parse_manifest(read(manifest.digest));
  import_file(store, blob(parsed.config.digest), parsed.config.digest, what);
  for (const Descriptor& layer : parsed.layers)
    import_file(store, blob(layer.digest), layer.digest, what);
  return finish(store, what, manifest);
}

ResolvedImage from_docker_archive(Store& store, const fs::path& file, const std::string& name,
                                  const std::string& what) {
  TempDir dir;
  extract_archive(file, dir.path(), what);
  nlohmann::json entries;
  try {
    entries = nlohmann::json::parse(read_file(dir.path() / "manifest.json"));
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
  if (!chosen->contains("Config") || !(*chosen)["Config"].is_string() ||
      !chosen->contains("Layers") || !(*chosen)["Layers"].is_array()) {
    throw Error(what + ": manifest.json entry lacks Config or Layers");
  }
  Manifest manifest;
  manifest.media_type = media_type::kOciManifest;
  Digest config =
      import_file(store, dir.path() / (*chosen)["Config"].get<std::string>(), std::nullopt, what);
  manifest.config = {media_type::kOciConfig,
                     config,
                     static_cast<int64_t>(fs::file_size(store.blob_path(config))),
                     {},
                     {},
                     {},
                     {}};
  ImageConfig parsed_config = parse_image_config(store.read_blob(config));
  for (const auto& layer : (*chosen)["Layers"]) {
    fs::path path = dir.path() / layer.get<std::string>();
    Digest digest = import_file(store, path, std::nullopt, what);
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
  if (manifest.layers.size() != parsed_config.diff_ids.size()) {
    throw Error(what + ": the config lists " + std::to_string(parsed_config.diff_ids.size()) +
                " layers but manifest.json has " + std::to_string(manifest.layers.size()));
  }
  std::string bytes = serialize(manifest);
  Digest digest = store.put_blob(bytes);
  return finish(
      store, what,
      {media_type::kOciManifest, digest, static_cast<int64_t>(bytes.size()), {}, {}, {}, {}});
}

}  // namespace

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
    extract_archive(file, dir.path(), what);
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
