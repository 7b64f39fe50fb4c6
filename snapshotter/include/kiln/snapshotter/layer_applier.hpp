// Applying an OCI layer (a tar changeset) on top of a root directory, safely.
//
// Layers come from registries and Containerfiles we do not control, so the applier treats every
// tar header as hostile: whatever the archive says, nothing outside `root` is created, modified
// or removed. Paths are resolved as if `root` were "/" (like chroot): every parent directory is
// looked up with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from a descriptor of `root`,
// and the final component is never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, O_EXCL, linkat
// without AT_SYMLINK_FOLLOW). libarchive only decodes; it never touches the disk.
//
// What a hostile entry gets (error = kiln::Error; re-rooted = applied as if root were "/"):
//   * a `..` component in an entry name or a hard link target ("../x", "a/../../x",
//     "../.wh.x"): error. No layer writer emits them; a lexical re-rooting would also disagree
//     with the on-disk resolution once symlinks are involved.
//   * an absolute name ("/x") or hard link target ("/etc/passwd"): re-rooted (the leading "/" is
//     dropped: some writers emit such names and `root` is the image's "/").
//   * a parent component that is a symlink, from this layer or already under root: followed
//     inside root, so "link -> /sub" or "link -> ../../.." land in root/sub and root. If it
//     dangles inside root (e.g. it names a host path not present under root) the entry is an
//     error: the applier never creates a symlink's target.
//   * a final component that is a symlink: replaced (unlinked, then the entry is created), never
//     written through.
//   * a hard link whose target is missing under root or is not a regular file (a symlink,
//     directory, fifo, device): error.
//   * a whiteout whose target is "", "." or ".." (".wh.", ".wh..", ".wh..."): error. A whiteout
//     or opaque marker whose directory does not exist (also through a dangling symlink) is a
//     no-op: there is nothing below to hide.
//   * a device with allow_devices == false: skipped with a warning (any existing path there is
//     left alone). Sockets are skipped with a warning; other unknown types are an error.
//   * a name with a component starting with ".wh..wh." (AUFS metadata such as ".wh..wh.plnk"),
//     other than a final ".wh..wh..opq": skipped with a warning. A non-final component starting
//     with ".wh." is an error (such a directory cannot exist in a changeset).
//   * an entry naming root itself ("", ".", "./", "/"): a directory is ignored (root's own
//     attributes belong to whoever made it); anything else is an error.
//
// Changeset rules (OCI image-spec layer.md): entries are applied in archive order; an existing
// path is replaced unless both it and the entry are directories, in which case the directory's
// attributes are replaced and its contents merged. `.wh.NAME` removes NAME (a whole tree, never
// following symlinks) if it came from a lower layer; `.wh..wh..opq` removes every child of its
// directory that did not come from this layer, wherever the marker appears in the archive.
// Entries of this layer are told from lower ones by identity (device, inode), so markers work
// also through symlinked parents. Missing parent directories are created with mode 0755.
//
// Attributes: mode (including setuid, setgid and sticky; set after ownership because chown
// clears them), mtime (atime too when the archive has it, else atime = mtime), uid/gid when
// preserve_ownership, xattrs (PAX SCHILY.xattr.*; set after chown, which drops
// security.capability). Hard links take the attributes of the inode they link to. Directory
// modes and mtimes are set after the whole archive is applied, deepest first, so that adding
// children neither changes the mtime nor is refused by a read-only directory.
//
// Xattr failures that only mean "this filesystem or file type cannot hold it" are warnings:
// ENOTSUP/EOPNOTSUPP for any name, EPERM for user.* on something other than a regular file or
// directory. Any other failure is an error.
//
// Integrity: every uncompressed byte of the tar stream is hashed on its way to the tar reader, so
// the layer's diff ID (the sha256 of its uncompressed tar, OCI image-spec config.md) is known once
// the archive is read; with ApplyOptions::expected_diff_id a different one is an error. The check
// can only come after the last entry: callers that must not keep an unverified tree (the snapshot
// cache) apply into a temporary directory and discard it when apply throws.
//
// Expansion (compression bombs): a layer may expand to at most oci::expansion_limit() of its
// compressed size (layer_blob.hpp: the larger of 4 GiB and 2048 times the compressed size). Both
// the uncompressed tar stream and the sum of the sizes its regular files declare (sparse holes
// included) are held to it; a file whose declared size would pass the limit is refused at its
// header, before any of its data is written. Memory does not grow with the layer: the stream is
// read and written 64 KiB at a time.
//
// On error the root is left partly applied (but never touched outside): callers apply into a
// fresh snapshot and discard it on failure. Not thread-safe for the same root; independent roots
// can be applied concurrently.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "kiln/oci/digest.hpp"

namespace kiln::snapshotter {

struct ApplyOptions {
  // lchown every entry to its uid/gid. Needs privilege: true as root, false rootless (entries
  // are then owned by the caller).
  bool preserve_ownership = true;
  // mknod character/block devices. Needs privilege; when false (rootless) devices are skipped
  // and reported through `warn`. FIFOs need no privilege and are always created.
  bool allow_devices = true;
  // Receives non-fatal notes (a skipped device, an unsupported xattr, an archive warning), one
  // complete line each, naming the layer and the entry. May be empty.
  std::function<void(const std::string&)> warn;
  // The diff ID the layer must have (from the image config); unset: not checked.
  std::optional<oci::Digest> expected_diff_id;
  // Overrides oci::expansion_limit() (tests use small values).
  std::optional<uint64_t> max_expanded_bytes;
};

struct ApplyStats {
  uint64_t entries = 0;       // tar entries read, including whiteouts and skipped entries
  uint64_t bytes = 0;         // regular-file content bytes written
  uint64_t whiteouts = 0;     // `.wh.NAME` and `.wh..wh..opq` entries applied (including no-ops)
  uint64_t uncompressed = 0;  // bytes of the uncompressed tar stream
  oci::Digest diff_id;        // sha256 of the uncompressed tar stream
};

// Applies the layer in the file `layer` (a tar, plain or compressed with anything libarchive
// auto-detects: gzip, zstd, xz, bzip2, ...) on top of the existing directory `root`, following
// the rules above. Throws kiln::Error "apply layer LAYER: entry "NAME": CAUSE" (or
// "apply layer LAYER: CAUSE" when no entry is involved) on a corrupt or truncated archive, an
// I/O error (a full disk included), an entry the rules above reject, a layer that expands past
// its limit, or a diff ID other than options.expected_diff_id (naming both digests).
ApplyStats apply_layer(const std::filesystem::path& layer, const std::filesystem::path& root,
                       const ApplyOptions& options = {});

// The same, reading the layer from an already-open readable descriptor (a file or a pipe; read
// sequentially from its current position, not closed). `name` identifies the layer in errors
// and warnings.
ApplyStats apply_layer_fd(int fd, const std::string& name, const std::filesystem::path& root,
                          const ApplyOptions& options = {});

}  // namespace kiln::snapshotter
