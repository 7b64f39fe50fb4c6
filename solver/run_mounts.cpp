#include "run_mounts.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/snapshotter/copy_tree.hpp"
#include "rootfs.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
using frontend::Mount;

std::string mount_target(const std::string& target, const std::string& cwd) {
  return "/" + clean_in_root(starts_with(target, "/") ? target : cwd + "/" + target);
}

void RunMounts::add(runner::ProcessSpec& spec, const frontend::Op& op, const Mount& m) {
  std::string target = m.target.empty() ? std::string() : mount_target(m.target, spec.cwd);
  switch (m.type) {
    case Mount::Type::kSsh: {
      auto it = env_.request.ssh_agents.find(m.id);
      if (it == env_.request.ssh_agents.end()) {
        if (m.required)
          throw Error("SSH agent " + quote(m.id) + " is required but was not given with --ssh");
        return;
      }
      if (target.empty())
        target = "/run/buildkit/ssh_agent." + std::to_string(agents_.size());
      auto dir = std::make_unique<TempDir>(env_.lease.temp_dir(), "ssh-");
      ::chmod(dir->path().c_str(), 0700);
      agents_.push_back(
          std::make_unique<SshAgentProxy>(it->second, dir->path(), m.mode, m.uid, m.gid));
      scratch_.push_back(std::move(dir));
      spec.mounts.push_back({target, "bind", agents_.back()->socket().string(), {"ro"}});
      if (agents_.size() == 1 && !has_env(spec.env, "SSH_AUTH_SOCK"))
        spec.env.push_back("SSH_AUTH_SOCK=" + target);
      return;
    }
    case Mount::Type::kBind: {
      InputTree tree = env_.input_tree(op.inputs.at(*m.input), /*for_key=*/false);
      // Context and directory trees are the user's files: a source is a path inside them, never
      // followed out through a symlink; stage and image trees resolve symlinks inside their root.
      std::string rel =
          tree.from_context ? clean_in_root(m.source) : resolve_in_root(tree.root, m.source);
      fs::path source = rel.empty() ? tree.root : tree.root / rel;
      if (!fs::exists(fs::symlink_status(source))) {
        throw Error("--mount type=bind: source " + quote(m.source.empty() ? "." : m.source) +
                    " not found");
      }
      if (!m.readonly) {
        // rw: the step writes to a copy that is thrown away (BuildKit's rule), never to the
        // user's context, a finished stage or a cached image root.
        auto dir = std::make_unique<TempDir>(env_.lease.temp_dir(), "bind-rw-");
        fs::path copy = dir->path() / "source";
        if (fs::is_directory(source)) {
          fs::create_directory(copy);
          snapshotter::copy_tree(source, copy);
        } else {
          fs::copy(source, copy, fs::copy_options::copy_symlinks);
        }
        source = copy;
        scratch_.push_back(std::move(dir));
      }
      spec.mounts.push_back({target, "bind", source.string(), {"rbind", m.readonly ? "ro" : "rw"}});
      return;
    }
    case Mount::Type::kCache: {
      Mount resolved = m;
      resolved.target = target;
      if (resolved.id.empty())
        resolved.id = target;
      fs::path dir = cache_dir(resolved);
      // locked (and private, which kiln treats the same way) serialise users of the cache;
      // shared ones hold it shared, so `kiln prune --all` can tell the cache is in use.
      UniqueFd lock =
          open_or_throw(env_.store.layout().cache_mount_lock(oci::sha256_of(resolved.id).hex()),
                        O_RDWR | O_CREAT, 0600);
      int operation = m.sharing == Mount::Sharing::kShared ? LOCK_SH : LOCK_EX;
      while (::flock(lock.get(), operation) != 0 && errno == EINTR) {
      }
      locks_.push_back(std::move(lock));
      spec.mounts.push_back({target, "bind", dir.string(), {"rbind", m.readonly ? "ro" : "rw"}});
      return;
    }
    case Mount::Type::kTmpfs: {
      std::vector<std::string> options = {"nosuid", "nodev", "mode=1777"};
      if (m.size)
        options.push_back("size=" + std::to_string(*m.size));
      spec.mounts.push_back({target, "tmpfs", "tmpfs", options});
      return;
    }
    case Mount::Type::kSecret: {
      auto it = env_.request.secrets.find(m.id);
      if (it == env_.request.secrets.end()) {
        if (m.required)
          throw Error("secret " + quote(m.id) + " is required but was not given with --secret");
        return;
      }
      std::string value;
      if (!it->second.env.empty()) {
        const char* env = std::getenv(it->second.env.c_str());
        if (!env)
          throw Error("secret " + quote(m.id) + ": environment variable " + it->second.env +
                      " is not set");
        value = env;
      } else {
        value = read_file(it->second.file);
      }
      if (!m.env.empty()) {
        std::erase_if(spec.env, [&](const std::string& e) { return e.starts_with(m.env + "="); });
        spec.env.push_back(m.env + "=" + value);
      }
      if (target.empty())
        return;
      // The secret is copied to a private file with the requested owner and mode; it is
      // mounted over the target and never lands in a layer (the target is a mountpoint).
      auto dir = std::make_unique<TempDir>(env_.lease.temp_dir(), "secret-");
      ::chmod(dir->path().c_str(), 0700);
      fs::path file = dir->path() / "secret";
      {
        UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, m.mode);
        write_all(fd.get(), value.data(), value.size(), "secret " + m.id);
      }
      ::chmod(file.c_str(), m.mode);
      if (::lchown(file.c_str(), m.uid, m.gid) != 0 && ::geteuid() == 0)
        throw Error("chown secret " + m.id + ": " + std::strerror(errno));
      spec.mounts.push_back({target, "bind", file.string(), {"ro"}});
      scratch_.push_back(std::move(dir));
      return;
    }
  }
}

void RunMounts::add_script(runner::ProcessSpec& spec, const std::string& name,
                           const std::string& script) {
  auto dir = std::make_unique<TempDir>(env_.lease.temp_dir(), "script-");
  fs::path file = dir->path() / name;
  {
    UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    write_all(fd.get(), script.data(), script.size(), file.string());
  }
  spec.mounts.push_back({"/dev/pipes", "bind", dir->path().string(), {"ro"}});
  scratch_.push_back(std::move(dir));
}

// Host directory holding a RUN --mount=type=cache, created with the requested owner and mode.
fs::path RunMounts::cache_dir(const Mount& m) {
  fs::path dir = env_.store.layout().cache_mount(oci::sha256_of(m.id).hex());
  if (!fs::exists(dir)) {
    fs::create_directories(dir);
    ::chmod(dir.c_str(), m.mode);
    if (::lchown(dir.c_str(), m.uid, m.gid) != 0 && ::geteuid() == 0)
      throw Error("chown cache mount " + dir.string() + ": " + std::strerror(errno));
  }
  return dir;
}

}  // namespace kiln::solver
