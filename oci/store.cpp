#include "kiln/oci/store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kiln/base/crash_point.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/lease.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

std::string errno_text() {
  return std::strerror(errno);
}

void fsync_dir(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd && ::fsync(fd.get()) != 0 && errno != EINVAL) {
    throw Error("fsync " + dir.string() + ": " + errno_text());
  }
}

}  // namespace

void write_file_atomically(const fs::path& path, std::string_view bytes) {
  fs::path temp = path.parent_path() / temp_file_name(path.filename().string());
  {
    UniqueFd fd = open_or_throw(temp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    try {
      write_all(fd.get(), bytes.data(), bytes.size() / 2, temp.string());
      crash_point("atomic-write-half");
      write_all(fd.get(), bytes.data() + bytes.size() / 2, bytes.size() - bytes.size() / 2,
                temp.string());
      if (::fsync(fd.get()) != 0)
        throw Error("fsync " + temp.string() + ": " + errno_text());
    } catch (...) {
      ::unlink(temp.c_str());
      throw;
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    throw Error("rename " + temp.string() + " to " + path.string() + ": " + std::strerror(err));
  }
  fsync_dir(path.parent_path());
}

// ---- BlobWriter ---------------------------------------------------------------------------

BlobWriter::BlobWriter(StoreLayout layout)
    : layout_(std::move(layout)), temp_(layout_.ingest() / temp_file_name("blob")) {
  fd_ = open_or_throw(temp_, O_WRONLY | O_CREAT | O_EXCL, 0644);
}

BlobWriter::~BlobWriter() {
  if (!committed_)
    ::unlink(temp_.c_str());
}

void BlobWriter::write(const void* data, size_t size) {
  write_all(fd_.get(), data, size, temp_.string());
  hash_.update(data, size);
  size_ += static_cast<int64_t>(size);
}

Digest BlobWriter::commit(const std::optional<Digest>& expected) {
  if (committed_)
    throw Error("blob " + temp_.string() + " committed twice");
  Digest digest = hash_.finish();
  if (expected && *expected != digest) {
    throw Error("blob content does not match its digest: expected " + expected->str() + ", got " +
                digest.str() + " (" + std::to_string(size_) + " bytes); nothing was stored");
  }
  crash_point("blob-before-rename");
  if (::fsync(fd_.get()) != 0)
    throw Error("fsync " + temp_.string() + ": " + errno_text());
  fd_.reset();
  fs::path final_path = layout_.blob(digest);
  {
    // `kiln prune` sweeps under an exclusive gc.lock (lease.hpp). Renaming under a shared one
    // means a prune never removes a blob that was just (re)committed: the rename gives it a fresh
    // mtime, newer than the start of the committing build's lease.
    GcLock lock(layout_.root(), /*exclusive=*/false);
    if (::rename(temp_.c_str(), final_path.c_str()) != 0) {
      throw Error("rename " + temp_.string() + " to " + final_path.string() + ": " + errno_text());
    }
  }
  committed_ = true;
  fsync_dir(final_path.parent_path());
  return digest;
}

// ---- Store --------------------------------------------------------------------------------

// Exclusive flock on index.lock for the lifetime of the object.
class Store::IndexLock {
 public:
  explicit IndexLock(const StoreLayout& layout) {
    fd_ = open_or_throw(layout.index_lock(), O_RDWR | O_CREAT, 0644);
    while (::flock(fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR)
        throw Error("lock " + layout.index_lock().string() + ": " + errno_text());
    }
  }

 private:
  UniqueFd fd_;
};

namespace {

// The store holds unpacked image filesystems - setuid-root binaries, file capabilities and
// device nodes included - and builds' scratch space: any path into it would let another local
// user run those with the privileges the image gives them. Like containers/storage and Docker,
// the root is private to its owner, created 0700 and tightened to 0700 when an older kiln left it
// open. A root owned by someone else (root reading a user's store) is not ours to change.
void make_private(const fs::path& root) {
  std::error_code ec;
  if (root.has_parent_path())
    fs::create_directories(root.parent_path(), ec);
  if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error("cannot create store directory " + root.string() + ": " + errno_text());
  }
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0)
    throw Error("cannot open store directory " + root.string() + ": " + errno_text());
  if (!S_ISDIR(st.st_mode))
    throw Error("store " + root.string() + " is not a directory");
  if (st.st_uid != ::geteuid() || (st.st_mode & 07777) == 0700)
    return;
  if (::chmod(root.c_str(), 0700) != 0) {
    throw Error("cannot make store directory " + root.string() +
                " private to its owner (chmod 0700): " + errno_text());
  }
}

}  // namespace

Store::Store(fs::path root) : layout_(std::move(root)) {
  try {
    open_or_create();
  } catch (const Error& e) {
    bool from_env = std::getenv("KILN_ROOT") && *std::getenv("KILN_ROOT");
    throw Error("the store " + layout_.root().string() + " is not usable: " + e.what() + " (" +
                (from_env ? "it is $KILN_ROOT" : "the default for this user; set $KILN_ROOT") +
                ": point it at a directory you can write)");
  }
}

void Store::open_or_create() {
  make_private(layout_.root());
  std::error_code ec;
  for (const fs::path& dir : {layout_.blobs("sha256"), layout_.ingest()}) {
    fs::create_directories(dir, ec);
    if (ec)
      throw Error("cannot create store directory " + dir.string() + ": " + ec.message());
  }
  IndexLock lock(layout_);
  // index.json first, oci-layout last: oci-layout marks a finished initialization (kiln check
  // reads a store without it as an interrupted first build).
  if (!fs::exists(layout_.index())) {
    Index empty;
    empty.media_type = media_type::kOciIndex;
    write_file_atomically(layout_.index(), serialize(empty));
  }
  if (!fs::exists(layout_.oci_layout())) {
    write_file_atomically(layout_.oci_layout(), R"({"imageLayoutVersion":"1.0.0"})");
  }
}

fs::path Store::default_root() {
  if (const char* root = std::getenv("KILN_ROOT"); root && *root)
    return root;
  if (::geteuid() == 0)
    return "/var/lib/kiln";
  if (const char* data = std::getenv("XDG_DATA_HOME"); data && *data)
    return fs::path(data) / "kiln";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return fs::path(home) / ".local" / "share" / "kiln";
  }
  throw Error("cannot choose a store directory: set KILN_ROOT (HOME is not set)");
}

bool Store::has_blob(const Digest& digest) const {
  return fs::exists(blob_path(digest));
}

fs::path Store::blob_path(const Digest& digest) const {
  return layout_.blob(digest);
}

std::string Store::read_blob(const Digest& digest) const {
  fs::path path = blob_path(digest);
  if (!fs::exists(path))
    throw Error("blob " + digest.str() + " is not in the store " + root().string());
  std::string bytes = read_file(path);
  if (sha256_of(bytes) != digest) {
    throw Error("blob " + path.string() + " is corrupt: its content does not match its digest");
  }
  return bytes;
}

Descriptor Store::put_index(const Index& index) {
  std::string bytes = serialize(index);
  Descriptor d;
  d.media_type = index.media_type.empty() ? media_type::kOciIndex : index.media_type;
  d.digest = put_blob(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  return d;
}

Digest Store::put_blob(std::string_view bytes) {
  Digest digest = sha256_of(bytes);
  {
    // An existing blob is touched instead of rewritten, under the same shared gc.lock a commit
    // takes: a concurrent prune then either removed it already (and it is written below) or sees
    // it as new and keeps it.
    GcLock lock(root(), /*exclusive=*/false);
    if (::utimensat(AT_FDCWD, blob_path(digest).c_str(), nullptr, 0) == 0)
      return digest;
  }
  auto writer = begin_blob();
  writer->write(bytes.data(), bytes.size());
  return writer->commit(digest);
}

std::unique_ptr<BlobWriter> Store::begin_blob() {
  return std::make_unique<BlobWriter>(layout_);
}

std::string Store::canonical_name(std::string_view name) {
  return parse_reference(name).familiar();
}

std::vector<TaggedImage> Store::read_index() const {
  Index index = parse_index(read_file(layout_.index()));
  std::vector<TaggedImage> images;
  for (Descriptor& d : index.manifests) {
    auto it = d.annotations.find(kRefNameAnnotation);
    std::string name = it == d.annotations.end() ? std::string() : it->second;
    images.push_back({std::move(name), std::move(d)});
  }
  return images;
}

void Store::write_index(const std::vector<TaggedImage>& images) {
  Index index;
  index.media_type = media_type::kOciIndex;
  for (const TaggedImage& image : images) {
    Descriptor d = image.descriptor;
    if (!image.name.empty())
      d.annotations[kRefNameAnnotation] = image.name;
    index.manifests.push_back(std::move(d));
  }
  write_file_atomically(layout_.index(), serialize(index));
}

std::vector<TaggedImage> Store::images() const {
  IndexLock lock(layout_);
  return read_index();
}

std::optional<TaggedImage> Store::find(std::string_view ref) const {
  std::vector<TaggedImage> all = images();
  if (auto parsed = try_parse_reference(ref)) {
    std::string name = parsed->familiar();
    for (const TaggedImage& image : all) {
      if (image.name == name)
        return image;
    }
  }
  // An image ID (config digest) or manifest digest, whole or as a prefix of its hex.
  std::string hex(ref);
  if (starts_with(hex, "sha256:"))
    hex = hex.substr(7);
  bool is_hex = hex.size() >= 4 && hex.size() <= 64 &&
                hex.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!is_hex)
    return std::nullopt;
  std::optional<TaggedImage> found;
  for (const TaggedImage& image : all) {
    std::vector<std::string> ids = {image.descriptor.digest.hex()};
    if (media_type::is_manifest(image.descriptor.media_type) && has_blob(image.descriptor.digest)) {
      ids.push_back(parse_manifest(read_blob(image.descriptor.digest)).config.digest.hex());
    }
    for (const std::string& id : ids) {
      if (!starts_with(id, hex))
        continue;
      if (found && found->descriptor.digest != image.descriptor.digest) {
        throw Error("image ID prefix " + std::string(ref) + " is ambiguous: it matches " +
                    found->name + " and " + image.name);
      }
      found = image;
    }
  }
  return found;
}

void Store::tag(const Descriptor& descriptor, std::string_view name) {
  std::string canonical = canonical_name(name);
  IndexLock lock(layout_);
  std::vector<TaggedImage> all = read_index();
  std::erase_if(all, [&](const TaggedImage& image) { return image.name == canonical; });
  Descriptor d = descriptor;
  d.annotations.erase(kRefNameAnnotation);
  all.push_back({canonical, std::move(d)});
  write_index(all);
}

Descriptor Store::update_tag(
    std::string_view name,
    const std::function<Descriptor(const std::optional<Descriptor>&)>& change) {
  std::string canonical = canonical_name(name);
  IndexLock lock(layout_);
  std::vector<TaggedImage> all = read_index();
  std::optional<Descriptor> current;
  for (const TaggedImage& image : all) {
    if (image.name == canonical)
      current = image.descriptor;
  }
  Descriptor d = change(current);
  std::erase_if(all, [&](const TaggedImage& image) { return image.name == canonical; });
  d.annotations.erase(kRefNameAnnotation);
  all.push_back({canonical, d});
  write_index(all);
  return d;
}

bool Store::untag(std::string_view name) {
  std::string canonical = canonical_name(name);
  IndexLock lock(layout_);
  std::vector<TaggedImage> all = read_index();
  size_t removed =
      std::erase_if(all, [&](const TaggedImage& image) { return image.name == canonical; });
  if (removed)
    write_index(all);
  return removed > 0;
}

}  // namespace kiln::oci
