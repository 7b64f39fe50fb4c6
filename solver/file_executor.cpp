// File ops: COPY and ADD (sources from the context, a local directory, an image or a stage; ADD
// URLs fetched once per build), and WORKDIR's directory.
#include <sys/stat.h>

#include "copy.hpp"
#include "executors.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/solver/url_fetch.hpp"
#include "ownership.hpp"
#include "rootfs.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
namespace {

using frontend::FileOp;

class FileExecutor final : public Executor {
 public:
  nlohmann::ordered_json inputs(Step& step) override {
    nlohmann::ordered_json in = nlohmann::ordered_json::object();
    const FileOp& f = std::get<FileOp>(step.op.data);
    if (f.action == FileOp::Action::kWorkdir)
      return in;
    InputTree tree = step.env.input_tree(step.op.inputs.at(1), /*for_key=*/true);
    if (!tree.from_context) {
      in["from"] = tree.key;
    } else {
      CopyRequest req = request(step, f, tree, /*for_key=*/true);
      in["sources"] = copy_source_digest(
          req,
          [&](const fs::path& path, const struct stat& st) {
            return step.env.hasher.file_hash(path, st);
          },
          step.listings ? &(*step.listings)["sources"] : nullptr);
    }
    return in;
  }

  void run(Step& step) override {
    const FileOp& f = std::get<FileOp>(step.op.data);
    if (f.action == FileOp::Action::kWorkdir) {
      workdir(step, f);
      return;
    }
    std::string keyword = f.action == FileOp::Action::kAdd ? "ADD" : "COPY";
    try {
      InputTree tree = step.env.input_tree(step.op.inputs.at(1), /*for_key=*/false);
      CopyRequest req = request(step, f, tree, /*for_key=*/false);
      CopyPlan plan = plan_copy(req);
      if (plan.entries.empty()) {
        add_history(step.state, step.env.created, step.op.text, true);
        return;
      }
      step.env.add_layer(step.state, std::move(plan.entries), /*applied=*/false);
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(step.op.where, keyword + ": " + e.what());
    }
    add_history(step.state, step.env.created, step.op.text, false);
  }

 private:
  // The request a COPY/ADD makes. With `for_key`, nothing that needs the stage's filesystem is
  // looked at (--chown names are not resolved, no destination root).
  CopyRequest request(Step& step, const FileOp& f, const InputTree& tree, bool for_key) {
    CopyRequest req;
    req.file = f;
    req.workdir = working_dir(step.state);
    req.now = step.env.now;
    req.source_root = tree.root;
    req.from_context = tree.from_context;
    req.ignore = tree.ignore;
    for (const std::string& source : f.sources) {
      if (is_url(source))
        req.downloads[source] = download(step.env, source, f.checksum);
    }
    if (!for_key) {
      req.dest_root = step.env.root(step.state);
      if (f.chown)
        req.chown = resolve_owner(*f.chown, req.dest_root);
    }
    return req;
  }

  static DownloadedSource download(BuildEnv& env, const std::string& url,
                                   const std::optional<std::string>& checksum) {
    std::lock_guard lock(env.download_mutex);
    std::string key = url + "|" + checksum.value_or("");
    auto it = env.downloads.find(key);
    if (it == env.downloads.end()) {
      fs::path dir = env.lease.temp_dir() / "downloads";
      fs::create_directories(dir);
      Download d = fetch_url(url, dir, checksum);
      it = env.downloads
               .emplace(key, DownloadedSource{d.file, d.name, d.last_modified.value_or(env.now)})
               .first;
    }
    return it->second;
  }

  // WORKDIR: the directory (and its missing parents) is created as a layer when it does not
  // exist, 0755 and owned by the current USER (BuildKit's mkdir with parents and the user); the
  // config's working directory changes either way.
  static void workdir(Step& step, const FileOp& f) {
    StageState& st = step.state;
    std::string joined = starts_with(f.dest, "/") ? f.dest : working_dir(st) + "/" + f.dest;
    std::string clean = "/" + clean_in_root(joined);
    st.config.config.working_dir = clean;
    fs::path rootfs = step.env.root(st);
    std::string resolved = resolve_in_root(rootfs, clean);
    auto existing = lstat_in_root(rootfs, resolved);
    if (resolved.empty() || (existing && S_ISDIR(existing->st_mode))) {
      add_history(st, step.env.created, step.op.text, true);
      return;
    }
    Owner owner;
    if (!st.config.config.user.empty()) {
      try {
        owner = resolve_owner(st.config.config.user, rootfs);
      } catch (const Error& e) {
        throw InputError(step.op.where, std::string("WORKDIR: ") + e.what());
      }
    }
    std::vector<snapshotter::LayerEntry> entries;
    for (std::string p = resolved; !p.empty();) {
      snapshotter::LayerEntry e;
      e.path = p;
      auto parent = lstat_in_root(rootfs, p);
      if (parent && S_ISDIR(parent->st_mode)) {
        e.mode = parent->st_mode;
        e.uid = parent->st_uid;
        e.gid = parent->st_gid;
        e.mtime_sec = parent->st_mtim.tv_sec;
      } else {
        e.mode = S_IFDIR | 0755;
        e.uid = owner.uid;
        e.gid = owner.gid;
        e.mtime_sec = step.env.now;
      }
      entries.push_back(std::move(e));
      size_t slash = p.rfind('/');
      p = slash == std::string::npos ? std::string() : p.substr(0, slash);
    }
    step.env.add_layer(st, std::move(entries), /*applied=*/false);
    add_history(st, step.env.created, step.op.text, false);
  }
};

}  // namespace

Executor& file_executor() {
  static FileExecutor executor;
  return executor;
}

}  // namespace kiln::solver
