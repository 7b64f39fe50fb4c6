// Turning what a RUN step changed into a layer.
//
// A step runs on top of the stage's unpacked root filesystem ROOT, with one of two backends:
//   * overlay: an overlayfs mount lowerdir=ROOT,upperdir=UPPER,workdir=WORK. After the step the
//     mount is gone and UPPER holds exactly the change, in overlayfs's own on-disk format;
//     diff_overlay_upper() translates it into OCI layer entries.
//   * copy: the step runs directly in ROOT. TreeIndex::scan() records ROOT's metadata before the
//     step and diff_tree() compares ROOT after it with that record.
// Either way, applying the layer (layer_applier.hpp) to the pre-step tree gives the post-step
// tree below its root: same paths, types, modes, owners, mtimes, contents, symlink targets,
// devices, hard links between regular files, and the xattrs entries_from_directory keeps (user.*
// and security.capability) except user.overlay.* (see below). The root's own attributes are not
// part of a layer.
//
// Entries use in-layer paths (relative, no leading "/"), sorted by path as write_layer wants
// them. Regular files name their host file in LayerEntry::source, so the tree must stay as it is
// until write_layer has read it.
//
// Translation rules, overlay backend (upper dir → entries):
//   regular file, dir, symlink, fifo, device  → entry with its lstat metadata and kept xattrs
//   char device 0/0 (a whiteout)               → "DIR/.wh.NAME" (S_IFREG|0, empty)
//   empty regular file with trusted.overlay.whiteout or user.overlay.whiteout
//                                              → "DIR/.wh.NAME" (the newer whiteout form; the
//                                                kernel honours it on lookup)
//   dir with overlay.opaque = "y"              → dir entry + "DIR/.wh..wh..opq"
//   dir with overlay.opaque = "x"              → dir entry only ("x" only says that the dir
//                                                holds xattr whiteouts; it is not opaque)
//   whiteout below an opaque or new directory  → dropped (nothing below it to hide)
//   overlay.redirect / overlay.metacopy xattr  → kiln::Error (the layer cannot express a
//                                                redirect or a data-less file; our mount
//                                                options keep both features off)
//   trusted.overlay.*, user.overlay.* xattrs   → never copied into entries (also the escaped
//                                                "user.overlay.overlay.X" a step set itself:
//                                                restored, it would steer the next overlay)
//   regular files sharing an inode in upper    → one entry with content, tar hard links to it
//   sockets                                    → skipped (a tar cannot hold them)
// Both xattr namespaces are read whatever the mount used: the trusted.* form is what a mount
// by real root writes, the user.* form what a `userxattr` mount (rootless) writes. Reading
// trusted.* needs CAP_SYS_ADMIN; without it only the user.* form is seen.
//
// Copy backend (before index vs. tree now):
//   path new, or any of dev/ino/type/mode/uid/gid/size/mtime/ctime/rdev/symlink target/xattr
//   digest differs        → entry with current metadata (a changed directory included)
//   type changed          → entry of the new type (the applier replaces; no whiteouts are
//                           emitted for the children of a directory that became a file)
//   path gone             → "PARENT/.wh.NAME" for the topmost missing path only (a deleted
//                           directory gives one whiteout, not one per child)
//   ancestors of any emitted entry or whiteout → their directory entries, current metadata
//   files sharing an inode among the emitted entries → tar hard links to the first path
//
// Excludes (both backends): `exclude` holds in-container paths ("etc/hosts"; a leading "/" or
// "./" and a trailing "/" are ignored) of mountpoints the sandbox created. Such a path is left
// out when it is an empty regular file or a (non-opaque) directory holding nothing but such
// excluded mountpoints (/run/secrets, made for /run/secrets/token); anything else there
// is kept, because then the step really wrote it. In the copy backend a deleted excluded path
// gives no whiteout if it was empty before either (a mountpoint the sandbox removed again).
//
// A name starting with ".wh." anywhere in the change cannot be stored in an OCI layer (the
// applier would take it for a whiteout): it is an error naming the path.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::snapshotter {

// Options for mount(2) of type "overlay":
//   "lowerdir=L1:L2,upperdir=U,workdir=W[,userxattr],redirect_dir=nofollow,metacopy=off".
// ',', ':' and '\' in a path are escaped with '\', which is how overlayfs splits its option
// string (the lowerdir list on unescaped ':'). redirect_dir=nofollow and metacopy=off are always
// added so that the upper dir never holds redirects or metadata-only copies, which a tar layer
// cannot express; renaming a lower directory then fails with EXDEV and tools such as mv(1) fall
// back to copying. ("nofollow", not "off": with userxattr the kernel rejects "off" when its
// redirect_always_follow parameter is set.) Relative paths are made absolute against the
// current directory. Throws kiln::Error if `lower` is empty, a path is empty, or the result does
// not fit in the one page mount(2) copies.
std::string overlay_mount_options(const std::vector<std::filesystem::path>& lower,
                                  const std::filesystem::path& upper,
                                  const std::filesystem::path& work, bool userxattr);

// Layer entries for the overlay upper dir `upper` (the mount already gone), following the rules
// above. `lower` is the mount's (single) lower dir; it is consulted only to tell whether a
// directory of upper without an opaque marker is new, so that whiteouts below it, which hide
// nothing, are left out. An empty `lower` treats every such directory as merged. Throws
// kiln::Error naming the host path on any failure.
std::vector<LayerEntry> diff_overlay_upper(const std::filesystem::path& upper,
                                           const std::filesystem::path& lower,
                                           const std::set<std::string>& exclude = {});

// Copy backend: the metadata of every entry of a tree (not its root, not sockets), without
// reading any content.
class TreeIndex {
 public:
  struct Node {
    dev_t dev = 0;
    ino_t ino = 0;
    mode_t mode = 0;  // type and permission bits
    uid_t uid = 0;
    gid_t gid = 0;
    nlink_t nlink = 0;
    dev_t rdev = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    std::string link_target;    // symlinks only
    uint64_t xattr_digest = 0;  // of the xattrs a layer would carry; 0 when there are none

    friend bool operator==(const Node&, const Node&) = default;
  };

  // lstat(2)s every entry below `root` (symlinks are never followed) and reads symlink targets
  // and xattrs. Before returning it waits (at most one tick of the coarse clock, a few ms) until
  // the clock has moved past every timestamp it could have recorded, so that any later change to
  // an entry gives it a ctime different from the recorded one even on a file system whose
  // timestamps come from that clock; file systems with coarser timestamps (1 s and more) can
  // still hide a same-size rewrite in the same second. Throws kiln::Error naming the host path.
  static TreeIndex scan(const std::filesystem::path& root);

  size_t size() const { return nodes_.size(); }
  // The node recorded for the in-layer path `path`, or nullptr.
  const Node* find(const std::string& path) const;
  // Every recorded node by in-layer path, in byte order.
  const std::map<std::string, Node>& nodes() const { return nodes_; }

 private:
  std::map<std::string, Node> nodes_;
};

// Entries that turn the tree recorded in `before` into the tree now at `root`, following the
// copy-backend rules above. Throws kiln::Error naming the host path on any failure.
std::vector<LayerEntry> diff_tree(const TreeIndex& before, const std::filesystem::path& root,
                                  const std::set<std::string>& exclude = {});

// Entries that turn the tree at `before_root` into the tree at `root`, two separate trees (a base
// image's snapshot and a stage's final root, for --squash): as diff_tree, except that an entry is
// unchanged when its type, mode, owner, size, mtime, device number, link target and xattrs match
// (inode numbers and ctimes differ between two trees whatever their content; a rewrite that keeps
// size and mtime is not seen, as rsync's quick check). Throws kiln::Error naming the host path.
std::vector<LayerEntry> diff_trees(const std::filesystem::path& before_root,
                                   const std::filesystem::path& root);

// Whether this process can use overlayfs: mounts a tiny overlay in a fresh directory under
// `scratch` (in the current mount namespace; with userxattr when `userxattr` is true or when
// the process is not root of the initial user namespace), deletes a lower file through it to
// check that whiteouts can be created, and unmounts it. `scratch` should be where the real
// upper dirs will live: the upper file system must support what overlayfs needs. Never throws.
bool overlay_available(const std::filesystem::path& scratch, bool userxattr) noexcept;

}  // namespace kiln::snapshotter
