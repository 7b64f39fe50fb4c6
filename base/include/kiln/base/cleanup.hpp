// What a stopped build leaves behind: scratch directories (which can hold plaintext secrets)
// are removed when kiln is stopped by SIGINT, SIGTERM or SIGHUP, not only when it exits
// normally. A SIGKILL cannot be caught: the store's scratch space is swept by the next build
// (stale leases) and by `kiln prune`.
#pragma once

#include <filesystem>

namespace kiln {

// Paths to remove if the process is stopped by a signal. TempDir registers its directories
// itself. Thread-safe.
void register_cleanup(const std::filesystem::path& path);
void unregister_cleanup(const std::filesystem::path& path);

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every thread it starts
// afterwards) and starts a thread that, when one arrives, removes every registered path without
// crossing into other mounts, then ends the process with that signal. Call once, before the
// process starts other threads and after it has entered any namespaces it unshares (unshare of
// a user namespace needs a single-threaded process). Processes the sandbox starts get an empty
// signal mask again.
void remove_on_signals();

}  // namespace kiln
