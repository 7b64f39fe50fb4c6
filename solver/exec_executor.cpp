// Exec ops: RUN in a sandbox over a writable view of the stage's root, its change written as a
// layer.
#include <algorithm>
#include <deque>
#include <set>

#include "cache_key.hpp"
#include "executors.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/runner/runner.hpp"
#include "kiln/runner/sandbox.hpp"
#include "ownership.hpp"
#include "rootfs.hpp"
#include "run_mounts.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
namespace {

using frontend::ExecOp;
using frontend::Mount;

// Keeps the last lines of a step's output for its error message; streams every line to progress.
class OutputTail {
 public:
  OutputTail(BuildEnv& env, size_t step) : env_(env), step_(step) {}

  void add(std::string_view chunk) {
    partial_.append(chunk);
    size_t nl;
    while ((nl = partial_.find('\n')) != std::string::npos) {
      std::string line = partial_.substr(0, nl);
      partial_.erase(0, nl + 1);
      env_.emit(ProgressEvent::Kind::kOutput, step_, {}, line);
      keep(std::move(line));
    }
  }

  std::string text() {
    if (!partial_.empty())
      keep(std::exchange(partial_, {}));
    std::string out;
    for (const std::string& line : tail_)
      out += "\n  " + line;
    return out;
  }

 private:
  void keep(std::string line) {
    tail_.push_back(std::move(line));
    if (tail_.size() > 10)
      tail_.pop_front();
  }

  BuildEnv& env_;
  size_t step_;
  std::deque<std::string> tail_;
  std::string partial_;
};

class ExecExecutor final : public Executor {
 public:
  // The bind mounts' sources: context and directory trees by the digest of what the mount
  // exposes, stages by key, images by digest.
  nlohmann::ordered_json inputs(Step& step) override {
    const ExecOp& e = std::get<ExecOp>(step.op.data);
    nlohmann::ordered_json mounts = nlohmann::ordered_json::array();
    std::string cwd = working_dir(step.state);
    for (const Mount& m : e.mounts) {
      if (m.type != Mount::Type::kBind)
        continue;
      std::string target = mount_target(m.target, cwd);
      InputTree tree = step.env.input_tree(step.op.inputs.at(*m.input), /*for_key=*/true);
      if (!tree.from_context) {
        mounts.push_back(target + " " + tree.key);
        continue;
      }
      CopyRequest req;
      req.file.sources = {m.source.empty() ? "." : m.source};
      req.file.dest = "/";
      req.source_root = tree.root;
      req.ignore = tree.ignore;
      mounts.push_back(target + " " +
                       copy_source_digest(
                           req,
                           [&](const fs::path& path, const struct stat& st) {
                             return step.env.hasher.file_hash(path, st);
                           },
                           step.listings ? &(*step.listings)["mount " + target] : nullptr));
    }
    return {{"mounts", std::move(mounts)}};
  }

  void run(Step& step) override {
    const ExecOp& e = std::get<ExecOp>(step.op.data);
    BuildEnv& env = step.env;
    StageState& st = step.state;
    std::optional<std::string> script;
    std::string script_name;
    runner::ProcessSpec spec;
    spec.args = argv(e, st, script, script_name);
    spec.env = environment(e, st);
    for (const auto& [name, value] : env.request.run_env) {
      if (!has_env(spec.env, name))
        spec.env.push_back(name + "=" + value);
    }
    spec.cwd = working_dir(st);
    spec.hostname = "buildkitsandbox";  // BuildKit's, which build scripts may print or check
    spec.hosts = !env.request.no_hosts;
    spec.cap_add = env.request.cap_add;
    spec.cap_drop = env.request.cap_drop;
    spec.no_new_privs = env.request.no_new_privs;
    spec.no_seccomp = env.request.no_seccomp;
    for (const BuildRequest::Rlimit& l : env.request.rlimits)
      spec.rlimits.push_back({l.resource, l.soft, l.hard});
    if (!env.request.shm_size.empty())
      spec.shm_size = env.request.shm_size;
    spec.resources = env.request.resources;
    if (std::optional<std::string> resolv = env.resolv_conf())
      spec.resolv_conf = *resolv;
    spec.extra_hosts = e.extra_hosts;
    spec.privileged = e.insecure;
    spec.network = env.run_network(e.network);
    const runner::IsolationChoice& isolation = env.isolation();
    spec.bind_proc = isolation.bind_proc;
    spec.keep_hostname = isolation.keep_hostname;
    spec.ignore_chown = isolation.single_id;
    RunMounts mounts(env);
    fs::path rootfs;
    try {
      rootfs = env.root(st);
      ProcessUser user = resolve_process_user(st.config.config.user, rootfs);
      spec.uid = user.uid;
      spec.gid = user.gid;
      spec.groups = user.groups;
      for (const std::string& group : env.request.group_add) {
        uint32_t gid = resolve_process_user("0:" + group, rootfs).gid;  // unknown names throw
        if (std::find(spec.groups.begin(), spec.groups.end(), gid) == spec.groups.end())
          spec.groups.push_back(gid);
      }
      // HOME from the user's passwd entry unless the image or a build arg sets it (runc's rule,
      // so BuildKit's).
      if (!has_env(spec.env, "HOME"))
        spec.env.push_back("HOME=" + user.home);
      for (const BuildRequest::Volume& v : env.request.volumes) {
        spec.mounts.push_back(
            {v.target, "bind", v.source.string(), {"rbind", v.read_only ? "ro" : "rw"}});
      }
      for (const Mount& m : e.mounts)
        mounts.add(spec, step.op, m);
      if (script)
        mounts.add_script(spec, script_name, *script);
    } catch (const InputError&) {
      throw;
    } catch (const Error& err) {
      throw InputError(step.op.where, std::string("RUN: ") + err.what());
    }

    OutputTail tail(env, step.id);
    spec.output = [&](std::string_view chunk) { tail.add(chunk); };
    std::unique_ptr<snapshotter::ActiveSnapshot> view =
        env.run_snapshotter().prepare(rootfs, env.lease.temp_dir());
    spec.rootfs = view->rootfs();
    if (std::optional<std::string> options = view->overlay_options())
      spec.rootfs_mount = runner::Mount{"/", "overlay", "overlay", {*options}};
    runner::RunResult result;
    try {
      result = env.make_runner()->run(spec);
    } catch (const Error& err) {
      throw InputError(step.op.where, std::string("RUN: ") + err.what());
    }
    if (result.exit_code != 0) {
      view->remove_mountpoints(result.created_mountpoints);
      // BuildKit's words, at the RUN's FILE:LINE:COL like every other build error.
      std::string message = "RUN: process " + quote(join(spec.args, " ")) +
                            " did not complete successfully: " +
                            (result.signal ? "killed by signal " + std::to_string(result.signal)
                                           : "exit code: " + std::to_string(result.exit_code));
      std::string last = tail.text();
      if (!last.empty())
        message += "; last output:" + last;
      throw InputError(step.op.where, message);
    }
    // Mount targets the sandbox had to create stay out of the layer, except /dev, /proc and /sys:
    // BuildKit's runc leaves those directories behind in the step's change.
    std::vector<std::string> created;
    for (const std::string& p : result.created_mountpoints) {
      if (p != "/dev" && p != "/proc" && p != "/sys")
        created.push_back(p);
    }
    std::set<std::string> exclude;
    for (const std::string& p : created)
      exclude.insert(clean_in_root(p));
    std::vector<snapshotter::LayerEntry> entries = view->diff(exclude);
    view->remove_mountpoints(created);
    std::string shown = e.shell_form ? (e.command.empty() ? std::string() : e.command.front())
                                     : json_array(e.command);
    std::string created_by = "RUN " +
                             (e.shell_form ? join(shell_of(st.config), " ") + " " + shown : shown) +
                             " # buildkit";
    if (entries.empty()) {
      add_history(st, env.created, created_by, true);
      return;
    }
    env.add_layer(st, std::move(entries), view->in_place());
    add_history(st, env.created, created_by, false);
  }

 private:
  // Exec form as it is; shell form through the stage's SHELL; here-documents as BuildKit runs
  // them (a lone `<<EOF` is the script; otherwise the bodies follow the command line so the
  // shell reads them itself).
  static std::vector<std::string> argv(const ExecOp& e, const StageState& st,
                                       std::optional<std::string>& script,
                                       std::string& script_name) {
    if (!e.shell_form)
      return e.command;
    std::string cmd = e.command.empty() ? std::string() : e.command.front();
    std::vector<std::string> out = shell_of(st.config);
    if (!e.heredocs.empty()) {
      std::string trimmed(trim(cmd));
      bool alone = e.heredocs.size() == 1 && trimmed.starts_with("<<") &&
                   trimmed.find_first_of(" \t") == std::string::npos;
      if (alone) {
        const std::string& body = e.heredocs.front().content;
        if (body.starts_with("#!")) {
          // Run as an executable file named after its delimiter (BuildKit: /dev/pipes/EOF); its
          // shebang picks the interpreter.
          script = body;
          const std::string& name = e.heredocs.front().name;
          bool plain =
              !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
          script_name = plain ? name : "kiln-script";
          return {"/dev/pipes/" + script_name};
        }
        out.push_back(body);
        return out;
      }
      for (const frontend::InlineFile& doc : e.heredocs)
        cmd += "\n" + doc.content + doc.name;
    }
    out.push_back(cmd);
    return out;
  }

  // The image's environment, then the build args ENV does not set.
  static std::vector<std::string> environment(const ExecOp& e, const StageState& st) {
    std::vector<std::string> env = st.config.config.env;
    for (const auto& [name, value] : e.build_args) {
      if (e.args_over_env.contains(name))
        set_env(env, name, value);
      else if (!has_env(env, name))
        env.push_back(name + "=" + value);
    }
    return env;
  }
};

}  // namespace

Executor& exec_executor() {
  static ExecExecutor executor;
  return executor;
}

}  // namespace kiln::solver
