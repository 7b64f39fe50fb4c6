#include "kiln/exporter/exporter.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/snapshotter/copy_tree.hpp"
#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::exporter {
namespace fs = std::filesystem;

namespace {

std::string docker_layer_type(const std::string& oci_type) {
  if (oci_type == oci::media_type::kOciLayerGzip)
    return oci::media_type::kDockerLayerGzip;
  if (oci_type == oci::media_type::kOciLayerZstd)
    return oci::media_type::kDockerLayerZstd;
  if (oci_type == oci::media_type::kOciLayer)
    return oci::media_type::kDockerLayer;
  return oci_type;
}

// Every blob an image (manifest or index) needs, the top one included.
std::vector<oci::Descriptor> closure(oci::Store& store, const oci::Descriptor& top) {
  std::vector<oci::Descriptor> out = {top};
  if (oci::media_type::is_index(top.media_type)) {
    for (const oci::Descriptor& d : oci::parse_index(store.read_blob(top.digest)).manifests) {
      for (oci::Descriptor& inner : closure(store, d))
        out.push_back(std::move(inner));
    }
  } else {
    oci::Manifest m = oci::parse_manifest(store.read_blob(top.digest));
    out.push_back(m.config);
    for (const oci::Descriptor& layer : m.layers)
      out.push_back(layer);
  }
  return out;
}

std::vector<oci::Descriptor> named_descriptors(const oci::Descriptor& top,
                                               const std::vector<std::string>& names) {
  std::vector<oci::Descriptor> out;
  if (names.empty())
    out.push_back(top);
  for (const std::string& name : names) {
    oci::Descriptor d = top;
    d.annotations[oci::kRefNameAnnotation] = oci::Store::canonical_name(name);
    out.push_back(std::move(d));
  }
  return out;
}

void copy_blob(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec)
    throw Error("copy " + from.string() + " to " + to.string() + ": " + ec.message());
}

// A tar file written through libarchive, renamed into place by commit().
class TarFile {
 public:
  explicit TarFile(const fs::path& path) : path_(path), temp_(path.string() + ".kiln-tmp") {
    fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
    a_ = archive_write_new();
    archive_write_set_format_pax_restricted(a_);
    if (archive_write_open_filename(a_, temp_.c_str()) != ARCHIVE_OK)
      fail("create");
  }
  ~TarFile() {
    if (a_)
      archive_write_free(a_);
    if (!committed_)
      ::unlink(temp_.c_str());
  }
  TarFile(const TarFile&) = delete;
  TarFile& operator=(const TarFile&) = delete;

  void add_bytes(const std::string& name, std::string_view bytes) {
    header(name, static_cast<int64_t>(bytes.size()));
    if (!bytes.empty() && archive_write_data(a_, bytes.data(), bytes.size()) < 0)
      fail("write");
  }

  void add_file(const std::string& name, const fs::path& source) {
    UniqueFd fd = open_or_throw(source, O_RDONLY);
    struct stat st {};
    ::fstat(fd.get(), &st);
    header(name, st.st_size);
    read_chunks(fd.get(), source.string(), [&](const char* data, size_t size) {
      if (archive_write_data(a_, data, size) < 0)
        fail("write");
    });
  }

  void add_dir(const std::string& name) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    if (archive_write_header(a_, e) != ARCHIVE_OK) {
      archive_entry_free(e);
      fail("write");
    }
    archive_entry_free(e);
  }

  void commit() {
    if (archive_write_close(a_) != ARCHIVE_OK)
      fail("finish");
    archive_write_free(a_);
    a_ = nullptr;
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      throw Error("rename " + temp_.string() + " to " + path_.string() + ": " +
                  std::strerror(errno));
    }
    committed_ = true;
  }

 private:
  void header(const std::string& name, int64_t size) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, size);
    int r = archive_write_header(a_, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
      fail("write");
  }
  [[noreturn]] void fail(const char* what) {
    std::string err = archive_error_string(a_) ? archive_error_string(a_) : "unknown error";
    throw Error(std::string(what) + " " + path_.string() + ": " + err);
  }

  fs::path path_;
  fs::path temp_;
  struct archive* a_ = nullptr;
  bool committed_ = false;
};

// Decompresses a layer blob (any compression libarchive reads) into `out`.
void decompress_layer(const fs::path& blob, const fs::path& out) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  std::string error;
  if (archive_read_open_filename(a, blob.c_str(), 1 << 16) != ARCHIVE_OK) {
    error = archive_error_string(a) ? archive_error_string(a) : "cannot open";
  }
  struct archive_entry* entry = nullptr;
  if (error.empty() && archive_read_next_header(a, &entry) != ARCHIVE_OK) {
    error = archive_error_string(a) ? archive_error_string(a) : "empty layer";
  }
  if (error.empty()) {
    UniqueFd fd = open_or_throw(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (archive_read_data_into_fd(a, fd.get()) != ARCHIVE_OK) {
      error = archive_error_string(a) ? archive_error_string(a) : "corrupt layer";
    }
  }
  archive_read_free(a);
  if (!error.empty())
    throw Error("decompress layer " + blob.string() + ": " + error);
}

}  // namespace

CommittedImage commit_image(oci::Store& store, const oci::ImageConfig& config,
                            const std::vector<oci::Descriptor>& layers, ManifestFormat format,
                            const std::map<std::string, std::string>& annotations) {
  bool docker = format == ManifestFormat::kDocker;
  if (docker && !annotations.empty())
    throw Error("annotations need OCI manifests: Docker's schema 2 cannot carry them");
  std::string config_bytes = oci::serialize(config);
  oci::Digest config_digest = store.put_blob(config_bytes);
  oci::Manifest manifest;
  manifest.media_type = docker ? oci::media_type::kDockerManifest : oci::media_type::kOciManifest;
  manifest.config.media_type =
      docker ? oci::media_type::kDockerConfig : oci::media_type::kOciConfig;
  manifest.config.digest = config_digest;
  manifest.config.size = static_cast<int64_t>(config_bytes.size());
  for (oci::Descriptor layer : layers) {
    if (docker)
      layer.media_type = docker_layer_type(layer.media_type);
    manifest.layers.push_back(std::move(layer));
  }
  manifest.annotations = annotations;
  std::string bytes = oci::serialize(manifest);
  oci::Descriptor d;
  d.media_type = manifest.media_type;
  d.digest = store.put_blob(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  return {d, config_digest};
}

void write_oci_layout(oci::Store& store, const oci::Descriptor& top,
                      const std::vector<std::string>& names, const fs::path& dir) {
  fs::create_directories(dir / "blobs" / "sha256");
  for (const oci::Descriptor& d : closure(store, top)) {
    fs::path target = dir / "blobs" / d.digest.algorithm() / d.digest.hex();
    if (!fs::exists(target)) {
      fs::path temp = target.string() + ".kiln-tmp";
      copy_blob(store.blob_path(d.digest), temp);
      fs::rename(temp, target);
    }
  }
  oci::write_file_atomically(dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  oci::Index index;
  index.media_type = oci::media_type::kOciIndex;
  if (fs::exists(dir / "index.json")) {
    index = oci::parse_index(read_file(dir / "index.json"));
  }
  std::set<std::string> new_names;
  for (const std::string& n : names)
    new_names.insert(oci::Store::canonical_name(n));
  std::erase_if(index.manifests, [&](const oci::Descriptor& d) {
    auto it = d.annotations.find(oci::kRefNameAnnotation);
    if (it == d.annotations.end())
      return names.empty() && d.digest == top.digest;
    return new_names.contains(it->second);
  });
  for (oci::Descriptor& d : named_descriptors(top, names))
    index.manifests.push_back(std::move(d));
  oci::write_file_atomically(dir / "index.json", oci::serialize(index));
}

void write_oci_archive(oci::Store& store, const oci::Descriptor& top,
                       const std::vector<std::string>& names, const fs::path& file) {
  TarFile tar(file);
  tar.add_bytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  oci::Index index;
  index.media_type = oci::media_type::kOciIndex;
  index.manifests = named_descriptors(top, names);
  tar.add_bytes("index.json", oci::serialize(index));
  tar.add_dir("blobs");
  tar.add_dir("blobs/sha256");
  std::set<oci::Digest> written;
  for (const oci::Descriptor& d : closure(store, top)) {
    if (!written.insert(d.digest).second)
      continue;
    tar.add_file("blobs/sha256/" + d.digest.hex(), store.blob_path(d.digest));
  }
  tar.commit();
}

void write_docker_archive(oci::Store& store, const oci::Descriptor& manifest_desc,
                          const std::vector<std::string>& names, const fs::path& file) {
  if (!oci::media_type::is_manifest(manifest_desc.media_type)) {
    throw Error("a docker-archive holds one platform's image; choose one with --platform");
  }
  oci::Manifest manifest = oci::parse_manifest(store.read_blob(manifest_desc.digest));
  oci::ImageConfig config = oci::parse_image_config(store.read_blob(manifest.config.digest));
  TarFile tar(file);
  std::string config_name = manifest.config.digest.hex() + ".json";
  tar.add_bytes(config_name, store.read_blob(manifest.config.digest));
  TempDir scratch;
  nlohmann::json layers = nlohmann::json::array();
  std::string last_id;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    // docker-archive layers are uncompressed tars named by their diff ID.
    const oci::Digest& diff_id = config.diff_ids.at(i);
    std::string name = diff_id.hex() + "/layer.tar";
    fs::path plain = scratch.path() / diff_id.hex();
    decompress_layer(store.blob_path(manifest.layers[i].digest), plain);
    tar.add_dir(diff_id.hex());
    tar.add_file(name, plain);
    fs::remove(plain);
    layers.push_back(name);
    last_id = diff_id.hex();
  }
  nlohmann::json tags = nlohmann::json::array();
  nlohmann::json repositories = nlohmann::json::object();
  for (const std::string& n : names) {
    oci::Reference ref = oci::parse_reference(n);
    std::string familiar = ref.familiar();
    tags.push_back(familiar);
    std::string repo = familiar.substr(0, familiar.rfind(':'));
    if (!ref.tag.empty() && !last_id.empty())
      repositories[repo][ref.tag] = last_id;
  }
  nlohmann::json entry = {{"Config", config_name}, {"RepoTags", tags}, {"Layers", layers}};
  tar.add_bytes("manifest.json", nlohmann::json::array({entry}).dump());
  tar.add_bytes("repositories", repositories.dump());
  tar.commit();
}

void write_rootfs_directory(const fs::path& rootfs, const fs::path& dest) {
  snapshotter::copy_tree(rootfs, dest);
}

void write_rootfs_tar(const fs::path& rootfs, const std::string& dest,
                      const std::optional<int64_t>& source_date_epoch) {
  snapshotter::LayerOptions options;
  options.compression.algorithm = snapshotter::Compression::kNone;
  options.source_date_epoch = source_date_epoch;
  if (dest == "-") {
    FdSink sink(STDOUT_FILENO, "standard output");
    snapshotter::write_layer(snapshotter::entries_from_directory(rootfs), options, sink);
    return;
  }
  fs::path temp = dest + ".kiln-tmp";
  try {
    UniqueFd fd = open_or_throw(temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FdSink sink(fd.get(), temp.string());
    snapshotter::write_layer(snapshotter::entries_from_directory(rootfs), options, sink);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  fs::rename(temp, dest);
}

}  // namespace kiln::exporter
