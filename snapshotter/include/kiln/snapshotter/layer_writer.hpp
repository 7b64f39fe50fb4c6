// The deterministic layer writer: a list of entries in, an OCI layer blob out, in one streaming
// pass. The uncompressed tar is hashed (diffID) on its way into the compressor, and the compressed
// bytes are hashed (blob digest) on their way to the sink, so a layer is never held in memory or
// re-read.
//
// Determinism: the tar bytes depend only on the entries (their order, the time of day, the
// process, the locale and the thread count do not matter), and the compressed bytes additionally
// only on the CompressionOptions' algorithm, level and block size. They do depend on the
// libarchive, zlib and libzstd versions.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kiln/base/io.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/snapshotter/compression.hpp"

namespace kiln::snapshotter {

struct LayerEntry {
  // In-layer path: relative, '/'-separated, no leading "/" or "./", no trailing "/", no empty,
  // "." or ".." components, no NUL. The layer root itself is never an entry.
  std::string path;
  // File type bits (S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK or S_IFIFO) | permission bits
  // including setuid/setgid/sticky. Nothing else may be set.
  mode_t mode = 0;
  uint32_t uid = 0, gid = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;  // 0..999999999; a non-zero value is kept (PAX "mtime" record)
  // Symlink target (required, any text) for S_IFLNK. For hardlink == true, the in-layer path of the
  // entry this one links to; if that entry is in the same layer it must sort before this one.
  std::string link_target;
  // A tar hard link (typeflag '1'): no content of its own; the mode must not be a directory.
  bool hardlink = false;
  // Regular files: the content is either the bytes of the host file `source` (read when the entry
  // is written, must be a regular file) or `content`; at most one may be set, and neither means an
  // empty file. Other types must have neither.
  std::filesystem::path source;
  std::optional<std::string> content;
  uint32_t dev_major = 0, dev_minor = 0;  // S_IFCHR / S_IFBLK only
  // Extended attributes, written as PAX SCHILY.xattr.NAME records in name order. Names must be
  // unique and non-empty.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

struct LayerOptions {
  CompressionOptions compression;
  // SOURCE_DATE_EPOCH: every mtime later than this becomes exactly this (with 0 nanoseconds).
  std::optional<int64_t> source_date_epoch;
  // With source_date_epoch, every mtime becomes it, earlier ones too (buildah's --timestamp).
  bool all_mtimes = false;
};

struct LayerResult {
  oci::Digest diff_id;  // sha256 of the uncompressed tar
  oci::Digest digest;   // sha256 of the bytes written to the sink
  int64_t size = 0;     // bytes written to the sink
  int64_t uncompressed_size = 0;
  Compression compression = Compression::kNone;
};

// Writes `entries` as a PAX tar through sha256 (diff_id) → CompressingSink → sha256 (digest) →
// `out`.
//
// The entries are sorted by path in byte order, which puts every directory before its contents;
// two entries with the same path are an error. uname/gname are empty, atime/ctime are not written,
// mtimes are clamped to source_date_epoch, and no PAX header carries a process id or time of its
// own. Entries that fit ustar have no PAX header; long or non-ASCII paths and link targets, large
// ids, sub-second mtimes and xattrs add one. Paths are bytes and are stored exactly, whatever the
// process locale: valid UTF-8 as PAX "path"/"linkpath" records (as Go's archive/tar writes them),
// anything else with hdrcharset=BINARY. The archive ends with the two zero blocks and is not padded
// further.
//
// Regular files stream from `source` in chunks; a source whose size changes while it is read, or
// that is missing or not a regular file, is an error naming it. Any failure throws kiln::Error
// naming the entry ("layer entry PATH: ..."); bytes already written to `out` are then garbage
// and the caller must discard them.
LayerResult write_layer(std::vector<LayerEntry> entries, const LayerOptions& options,
                        kiln::ByteSink& out);

// The entry for the host file `host` at the in-layer path `path`, from its lstat(2) `st`: type and
// permission bits, owner and mtime, and by type: a regular file's content source (`host`), a
// symlink's target (read now) or a device's numbers. Xattrs and hard links are left to the
// caller. Throws kiln::Error naming `host` when the symlink cannot be read or the type cannot be
// in a layer (a socket: callers skip those).
LayerEntry entry_from_lstat(const std::filesystem::path& host, std::string path,
                            const struct stat& st);

// Collects entries for the directory tree under `root` (which is not itself an entry), with
// lstat(2) metadata; symlinks are recorded, never followed. Files sharing (st_dev, st_ino) become
// tar hard links to the one whose path sorts first. user.* and security.capability xattrs are read
// with llistxattr/lgetxattr (a file system without xattr support gives none). Sockets are skipped.
// `prefix` (e.g. "app/data"; leading "/" or "./" and trailing "/" are ignored) is prepended to
// every in-layer path; its own directories are not entries. The result is sorted by path, as
// write_layer writes it. Throws kiln::Error naming the host path on any failure.
std::vector<LayerEntry> entries_from_directory(const std::filesystem::path& root,
                                               const std::string& prefix = "");

}  // namespace kiln::snapshotter
