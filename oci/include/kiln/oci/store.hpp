// The local content store: an OCI image layout on disk that skopeo and umoci read as-is.
// store_layout.hpp names every path under the root; the image layout part is:
//
//   ROOT/oci-layout            {"imageLayoutVersion":"1.0.0"}
//   ROOT/index.json            an image index; each tagged image is one descriptor whose
//                              "org.opencontainers.image.ref.name" annotation is its name in
//                              docker's short form ("app:1.2", "localhost:5000/x/y:1")
//   ROOT/blobs/sha256/HEX      content, by digest
//   ROOT/ingest/               blobs being written (never visible under blobs/ until verified)
//   ROOT/index.lock            flock(2) guard for index.json
//
// Guarantees: a blob appears under blobs/ only complete, fsync'ed and with the digest its name
// says (temp file, fsync, rename, then fsync of the directory); index.json is replaced atomically
// the same way, under an exclusive flock, so concurrent kiln processes and a kill -9 at any point
// leave either the old or the new index, never a torn one. A Store object is safe to use from
// several threads; several processes may share one root.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/fd.hpp"
#include "kiln/base/io.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::oci {

struct Index;

inline constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";

// Streams one blob into the store. write() as often as needed, then commit() once; a writer that
// is destroyed without commit() removes its temporary file.
class BlobWriter : public ByteSink {
 public:
  // A new temporary file in the store's ingest/. Throws kiln::Error naming it when it cannot be
  // created.
  explicit BlobWriter(StoreLayout layout);
  ~BlobWriter() override;
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  void write(const void* data, size_t size) override;
  // Makes the blob visible under its digest. When `expected` is given and differs from what was
  // written, nothing becomes visible and kiln::Error names both digests. Committing content that
  // is already stored is fine (the new copy is dropped).
  Digest commit(const std::optional<Digest>& expected = std::nullopt);
  int64_t size() const { return size_; }

 private:
  StoreLayout layout_;
  std::filesystem::path temp_;
  UniqueFd fd_;
  Sha256 hash_;
  int64_t size_ = 0;
  bool committed_ = false;
};

struct TaggedImage {
  std::string name;  // docker short form, e.g. "app:1.2"
  Descriptor descriptor;
};

class Store {
 public:
  // Opens (creating when missing) the store at `root`. The root is private to its owner: created
  // 0700, and tightened to 0700 when it is ours and more open (an older kiln made it 0755), since
  // snapshots under it keep the setuid binaries and devices of images. Throws kiln::Error naming
  // the root when it cannot be created or made private, or is not a kiln/OCI layout.
  explicit Store(std::filesystem::path root);

  // $KILN_ROOT when set; /var/lib/kiln for root; else $XDG_DATA_HOME/kiln or ~/.local/share/kiln.
  static std::filesystem::path default_root();

  const std::filesystem::path& root() const { return layout_.root(); }
  const StoreLayout& layout() const { return layout_; }

  bool has_blob(const Digest& digest) const;
  std::filesystem::path blob_path(const Digest& digest) const;
  // Reads a whole blob (manifests, configs: small) and checks its digest. Throws kiln::Error when
  // it is missing or its content does not match.
  std::string read_blob(const Digest& digest) const;
  // Stores bytes; returns their digest.
  Digest put_blob(std::string_view bytes);
  // Stores an index's canonical bytes (serialize(Index)); returns its descriptor, whose media
  // type is the index's own, else OCI's.
  Descriptor put_index(const Index& index);
  std::unique_ptr<BlobWriter> begin_blob();

  // Every tagged image in index.json, in order.
  std::vector<TaggedImage> images() const;
  // The image a user means by `ref`: a tag (normalised as docker does: "app" is "app:latest"), a
  // full or prefixed image ID (config digest, at least 4 hex digits) or manifest digest. nullopt
  // when nothing matches; kiln::Error when an ID prefix is ambiguous.
  std::optional<TaggedImage> find(std::string_view ref) const;
  // Points `name` at `descriptor` (replacing what it named before). Throws kiln::Error for an
  // invalid name.
  void tag(const Descriptor& descriptor, std::string_view name);
  // Read-modify-write of one tag under the index lock, so that concurrent updates of the same
  // name (two builds adding to one manifest list) are not lost: `change` gets what `name` points
  // at now (nullopt when untagged) and returns the new descriptor, whose blob it has stored.
  // Returns that descriptor. An exception from `change` leaves the tag as it was.
  Descriptor update_tag(std::string_view name,
                        const std::function<Descriptor(const std::optional<Descriptor>&)>& change);
  // Removes the tag; false when there was none.
  bool untag(std::string_view name);

  // The short name kiln stores for a user-given reference: "app" → "app:latest".
  static std::string canonical_name(std::string_view name);

 private:
  class IndexLock;
  void open_or_create();
  std::vector<TaggedImage> read_index() const;
  void write_index(const std::vector<TaggedImage>& images);

  StoreLayout layout_;
};

// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
// directory. Throws kiln::Error naming the path.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace kiln::oci
