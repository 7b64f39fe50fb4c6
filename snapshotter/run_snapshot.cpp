#include "kiln/snapshotter/run_snapshot.hpp"

#include <sys/stat.h>

#include <algorithm>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/snapshotter/diff.hpp"

namespace kiln::snapshotter {
namespace fs = std::filesystem;
namespace {

// Whether this process is in the initial user namespace (full uid map).
bool in_initial_userns() {
  try {
    return read_file("/proc/self/uid_map").find("4294967295") != std::string::npos;
  } catch (const Error&) {
    return true;
  }
}

class OverlaySnapshot final : public ActiveSnapshot {
 public:
  OverlaySnapshot(const fs::path& lower, const fs::path& scratch_parent)
      : lower_(lower), dir_(scratch_parent, "run-") {
    upper_ = dir_.path() / "upper";
    work_ = dir_.path() / "work";
    merged_ = dir_.path() / "merged";
    for (const fs::path& d : {upper_, work_, merged_})
      fs::create_directories(d);
    options_ = overlay_mount_options({lower_}, upper_, work_, /*userxattr=*/true);
  }
  ~OverlaySnapshot() override {
    // overlayfs leaves work/work with mode 000; make it removable for the TempDir.
    ::chmod((work_ / "work").c_str(), 0700);
  }

  const fs::path& rootfs() const override { return merged_; }
  std::optional<std::string> overlay_options() const override { return options_; }
  std::vector<LayerEntry> diff(const std::set<std::string>& exclude) override {
    ::chmod((work_ / "work").c_str(), 0700);
    return diff_overlay_upper(upper_, lower_, exclude);
  }
  bool in_place() const override { return false; }
  void remove_mountpoints(const std::vector<std::string>&) override {}

 private:
  fs::path lower_;
  TempDir dir_;
  fs::path upper_, work_, merged_;
  std::string options_;
};

class CopySnapshot final : public ActiveSnapshot {
 public:
  explicit CopySnapshot(const fs::path& root) : root_(root), before_(TreeIndex::scan(root)) {}

  const fs::path& rootfs() const override { return root_; }
  std::optional<std::string> overlay_options() const override { return std::nullopt; }
  std::vector<LayerEntry> diff(const std::set<std::string>& exclude) override {
    return diff_tree(before_, root_, exclude);
  }
  bool in_place() const override { return true; }
  void remove_mountpoints(const std::vector<std::string>& created) override {
    std::vector<std::string> paths = created;
    std::sort(paths.rbegin(), paths.rend());
    for (const std::string& p : paths) {
      fs::path host = root_ / fs::path(p).relative_path();
      std::error_code ec;
      fs::file_status status = fs::symlink_status(host, ec);
      bool empty = fs::is_directory(status) ? fs::is_empty(host, ec)
                   : fs::is_regular_file(status)
                       ? fs::file_size(host, ec) == 0
                       : fs::is_symlink(status) || fs::is_character_file(status);
      if (empty && !ec)
        fs::remove(host, ec);
    }
  }

 private:
  fs::path root_;
  TreeIndex before_;
};

class OverlaySnapshotter final : public RunSnapshotter {
 public:
  explicit OverlaySnapshotter(bool overlay_roots) : overlay_roots_(overlay_roots) {}
  const char* name() const override { return "overlay"; }
  std::unique_ptr<ActiveSnapshot> prepare(const fs::path& root,
                                          const fs::path& scratch_parent) override {
    return std::make_unique<OverlaySnapshot>(root, scratch_parent);
  }
  bool overlay_roots() const override { return overlay_roots_; }

 private:
  bool overlay_roots_;
};

class CopySnapshotter final : public RunSnapshotter {
 public:
  explicit CopySnapshotter(bool overlay_roots) : overlay_roots_(overlay_roots) {}
  const char* name() const override { return "copy"; }
  std::unique_ptr<ActiveSnapshot> prepare(const fs::path& root, const fs::path&) override {
    return std::make_unique<CopySnapshot>(root);
  }
  bool overlay_roots() const override { return overlay_roots_; }

 private:
  bool overlay_roots_;
};

}  // namespace

std::unique_ptr<RunSnapshotter> make_run_snapshotter(
    const std::string& mode, const fs::path& probe_parent,
    const std::function<void(const std::string&)>& notice) {
  if (mode != "auto" && mode != "overlay" && mode != "copy")
    throw Error("--snapshotter " + mode + ": expected auto, overlay or copy");
  if (mode == "copy")
    return std::make_unique<CopySnapshotter>(false);
  // Stage roots are mounted by kiln itself (userxattr only inside a user namespace); RUN
  // overlays by the sandbox, always inside its user namespace.
  bool roots = false, steps = false;
  {
    TempDir probe(probe_parent, "overlay-probe-");
    roots = overlay_available(probe.path(), !in_initial_userns());
  }
  {
    TempDir probe(probe_parent, "overlay-probe-");
    steps = overlay_available(probe.path(), /*userxattr=*/true);
  }
  if (steps)
    return std::make_unique<OverlaySnapshotter>(roots);
  if (mode == "overlay")
    throw Error("--snapshotter overlay: overlayfs cannot be mounted here (use --snapshotter copy)");
  if (notice)
    notice("overlayfs cannot be mounted here: RUN steps use the copy snapshotter");
  return std::make_unique<CopySnapshotter>(roots);
}

}  // namespace kiln::snapshotter
