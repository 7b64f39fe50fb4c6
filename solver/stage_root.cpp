#include "stage_root.hpp"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kiln/base/error.hpp"
#include "kiln/snapshotter/diff.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

StageRoot::StageRoot(const fs::path& parent) : dir_(parent, "kiln-stage-") {
  root_ = dir_.path() / "root";
  fs::create_directory(root_);
  ::chmod(root_.c_str(), 0755);
}

StageRoot::StageRoot(const fs::path& parent, const fs::path& snapshot, bool overlay, bool userxattr)
    : dir_(parent, "kiln-stage-") {
  root_ = dir_.path() / "root";
  fs::create_directory(root_);
  if (!overlay) {
    snapshotter::copy_tree(snapshot, root_);
    return;
  }
  fs::path upper = dir_.path() / "upper", work = dir_.path() / "work";
  fs::create_directory(upper);
  fs::create_directory(work);
  // The merged root takes its own attributes from the upper directory.
  struct stat st {};
  if (::stat(snapshot.c_str(), &st) == 0) {
    ::chmod(upper.c_str(), st.st_mode & 07777);
    if (::lchown(upper.c_str(), st.st_uid, st.st_gid) != 0 && ::geteuid() == 0) {
      throw Error("chown " + upper.string() + ": " + std::strerror(errno));
    }
  }
  std::string options = snapshotter::overlay_mount_options({snapshot}, upper, work, userxattr);
  if (::mount("overlay", root_.c_str(), "overlay", 0, options.c_str()) != 0) {
    throw Error("mount overlay for a stage root on " + root_.string() + ": " +
                std::strerror(errno));
  }
  mounted_ = true;
}

StageRoot::~StageRoot() {
  if (mounted_)
    ::umount2(root_.c_str(), MNT_DETACH);
  // overlayfs leaves work/work with mode 000; make it removable for the TempDir.
  ::chmod((dir_.path() / "work" / "work").c_str(), 0700);
}

}  // namespace kiln::solver
