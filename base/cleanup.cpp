#include "kiln/base/cleanup.hpp"

#include <ftw.h>
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace kiln {
namespace {

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::set<std::string>& registry() {
  static std::set<std::string> paths;
  return paths;
}

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP)
    ::rmdir(path);
  else
    ::unlink(path);
  return 0;  // remove what can be removed
}

}  // namespace

void register_cleanup(const std::filesystem::path& path) {
  std::lock_guard lock(registry_mutex());
  registry().insert(path.string());
}

void unregister_cleanup(const std::filesystem::path& path) {
  std::lock_guard lock(registry_mutex());
  registry().erase(path.string());
}

void remove_on_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
      sigaddset(&signals, sig);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::thread([signals] {
      int sig = 0;
      while (sigwait(&signals, &sig) != 0) {
      }
      std::set<std::string> paths;
      {
        std::lock_guard lock(registry_mutex());
        paths = registry();
      }
      // Depth first, never following symlinks, never entering another file system (an overlay
      // mounted on a stage root is left to the kernel when the process's mount namespace goes).
      for (const std::string& path : paths)
        ::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
      std::signal(sig, SIG_DFL);
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, sig);
      pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      ::raise(sig);
      ::_exit(128 + sig);
    }).detach();
  });
}

}  // namespace kiln
