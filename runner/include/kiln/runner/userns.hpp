// Rootless builds: kiln moves itself into a user namespace where it is root.
//
// As an unprivileged user, a build needs to create files owned by other users (a package's files,
// `chown 1000`) and to mount (overlayfs, the sandbox's /proc). kiln therefore unshares a user and
// a mount namespace at the start of a build: inside, id 0 is the invoking user and ids 1..N are
// the user's range from /etc/subuid and /etc/subgid, written with newuidmap/newgidmap (the setuid
// helpers from the uidmap package). Files kiln writes are then owned by in-container ids as seen
// from inside, and by the mapped host ids on disk, as with buildah and podman. Without ranges it
// falls back to a single-id map (only root exists inside) and says so once.
#pragma once

#include <functional>
#include <string>

namespace kiln::runner {

struct UserNamespaceResult {
  bool entered = false;     // false when already root (nothing to do)
  bool single_id = false;   // no subordinate ranges: only one id is mapped
  unsigned mapped_ids = 0;  // how many uids are usable inside
};

// Must be called while the process has a single thread. Root only gets a private mount
// namespace (its mounts stay out of the host's mount table). Throws kiln::Error
// naming the step that failed (unshare, newuidmap, ...). `notice` receives the one-line message
// about the single-id fallback.
UserNamespaceResult enter_build_user_namespace(
    const std::function<void(const std::string&)>& notice);

}  // namespace kiln::runner
