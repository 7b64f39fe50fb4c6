// How a RUN step gets a writable view of a root filesystem, and how its change becomes layer
// entries: two backends behind one small interface, chosen in one place (make_run_snapshotter).
//
//   overlay  the step writes to an overlay's upper directory over the root (which stays as it
//            was); the sandbox mounts the overlay inside its user namespace; the change is the
//            upper directory (diff_overlay_upper).
//   copy     the step writes to the root itself; the change is what differs from an index of the
//            root taken before (diff_tree). For kernels or file systems without overlayfs.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::snapshotter {

// One step's view. Not thread-safe; destroy it to clean up (the overlay's directories).
class ActiveSnapshot {
 public:
  virtual ~ActiveSnapshot() = default;
  // The directory the step's process sees as its root.
  virtual const std::filesystem::path& rootfs() const = 0;
  // Options for an overlay the sandbox mounts at rootfs() in its user namespace (userxattr);
  // nullopt when rootfs() is used as it is.
  virtual std::optional<std::string> overlay_options() const = 0;
  // The change the step made, without `exclude` (mountpoints the sandbox created, as in-layer
  // paths) where they are still stubs: empty files and directories, and the device nodes and
  // symlinks chroot isolation makes in /dev. Call once, after the step succeeded. Throws
  // kiln::Error naming the path.
  virtual std::vector<LayerEntry> diff(const std::set<std::string>& exclude) = 0;
  // Whether the change is already in the root it was prepared over (copy backend).
  virtual bool in_place() const = 0;
  // Removes mountpoints (in-layer paths) the sandbox created in a shared root when they are
  // still stubs (as for diff), deepest first. Nothing to do for an overlay.
  virtual void remove_mountpoints(const std::vector<std::string>& created) = 0;
};

class RunSnapshotter {
 public:
  virtual ~RunSnapshotter() = default;
  virtual const char* name() const = 0;
  // A view over `root` for one step; its scratch directories go below `scratch_parent`.
  virtual std::unique_ptr<ActiveSnapshot> prepare(const std::filesystem::path& root,
                                                  const std::filesystem::path& scratch_parent) = 0;
  // Whether a stage's root over an unpacked image may be an overlay (else a copy).
  virtual bool overlay_roots() const = 0;
};

// mode "overlay", "copy" or "auto" (overlay where it can be mounted). Probes overlayfs in a
// directory below `probe_parent`. `notice` hears why auto fell back to copy. Throws kiln::Error
// when mode is "overlay" and overlayfs cannot be mounted here, or the mode is unknown.
std::unique_ptr<RunSnapshotter> make_run_snapshotter(
    const std::string& mode, const std::filesystem::path& probe_parent,
    const std::function<void(const std::string&)>& notice);

}  // namespace kiln::snapshotter
