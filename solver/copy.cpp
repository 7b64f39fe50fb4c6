#include "copy.hpp"

#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <unordered_map>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/shell_lexer.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/tar_extract.hpp"
#include "rootfs.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
using snapshotter::LayerEntry;

namespace {

bool has_wildcard(std::string_view s) {
  return s.find_first_of("*?[") != std::string_view::npos;
}

std::string join_rel(const std::string& a, const std::string& b) {
  if (a.empty())
    return b;
  if (b.empty())
    return a;
  return a + "/" + b;
}

std::string base_name(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

std::string parent_of(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

// One thing a source argument names, relative to the source root.
struct Source {
  std::string rel;   // path under source_root ("" is the root itself), symlinks resolved
  std::string name;  // the last component as named: a symlinked file keeps the link's name
  std::string keep;  // with --parents: the part of rel recreated under the destination
  bool is_dir = false;
};

class Planner {
 public:
  // In key mode the plan never looks at the destination filesystem and treats ADD archives as
  // plain files: what it selects depends on the sources alone (see copy_source_digest).
  Planner(const CopyRequest& r, bool key_mode) : r_(r), key_mode_(key_mode) {
    if (!r.file.exclude.empty()) {
      exclude_ = frontend::IgnoreMatcher::parse(join(r.file.exclude, "\n"), "--exclude");
    }
  }

  CopyPlan run() {
    std::string dest_text = r_.file.dest;
    bool dest_has_slash = dest_text.ends_with('/') || dest_text == "." || dest_text.ends_with("/.");
    std::string dest_abs = starts_with(dest_text, "/") ? dest_text : r_.workdir + "/" + dest_text;
    // The destination lives inside the stage's filesystem: resolve its symlinks there (BuildKit
    // copies through a symlinked directory), unless --link keeps the step independent of it.
    dest_ = !looks_at_dest() ? clean_in_root(dest_abs) : resolve_in_root(r_.dest_root, dest_abs);

    std::vector<std::pair<Source, bool>> sources;  // source, is_heredoc
    size_t heredoc_index = 0;
    for (const std::string& arg : r_.file.sources) {
      if (is_heredoc_word(arg) && heredoc_index < r_.file.heredocs.size()) {
        heredocs_.push_back(&r_.file.heredocs[heredoc_index++]);
        continue;
      }
      if (auto download = r_.downloads.find(arg); download != r_.downloads.end()) {
        downloads_.push_back(&download->second);
        continue;
      }
      std::vector<Source> found = expand_source(arg);
      for (Source& s : found)
        sources.emplace_back(std::move(s), false);
    }
    bool dest_is_existing_dir = false;
    if (looks_at_dest() && !dest_.empty()) {
      auto st = lstat_in_root(r_.dest_root, dest_);
      dest_is_existing_dir = st && S_ISDIR(st->st_mode);
    }
    // Several sources with a destination that is not a directory: BuildKit has no rule against
    // it and copies each onto the destination in turn (the last file wins).
    bool into_dir = dest_has_slash || dest_is_existing_dir || dest_.empty();

    for (const auto& [source, heredoc] : sources) {
      (void)heredoc;
      ++source_group_;
      copy_source(source, into_dir);
    }
    for (const frontend::InlineFile* doc : heredocs_) {
      std::string target = into_dir ? join_rel(dest_, doc->name) : dest_;
      LayerEntry entry;
      entry.path = target;
      entry.mode = S_IFREG | 0644;
      entry.content = doc->content;
      entry.mtime_sec = r_.now;
      add_created(std::move(entry));
    }
    for (const DownloadedSource* d : downloads_) {
      if (into_dir && d->name.empty()) {
        throw Error("cannot tell a file name from the URL: give the destination as a file path");
      }
      LayerEntry entry;
      entry.path = into_dir ? join_rel(dest_, d->name) : dest_;
      entry.mode = S_IFREG | 0600;
      entry.source = d->file;
      entry.mtime_sec = d->mtime;
      add_created(std::move(entry));
    }
    add_parents();
    link_hard_links();
    CopyPlan plan;
    plan.entries.reserve(entries_.size());
    for (auto& [path, entry] : entries_)
      plan.entries.push_back(std::move(entry));
    plan.scratch = std::move(scratch_);
    plan.source_stats = std::move(stats_);
    return plan;
  }

 private:
  static bool is_heredoc_word(const std::string& arg) {
    size_t i = 0;
    while (i < arg.size() && arg[i] >= '0' && arg[i] <= '9')
      ++i;
    return arg.compare(i, 2, "<<") == 0;
  }

  // --- sources --------------------------------------------------------------------------------

  std::string describe(const std::string& rel) const {
    return r_.from_context ? quote(rel.empty() ? "." : rel) + " in the build context"
                           : quote("/" + rel);
  }

  bool excluded_by_ignore(const std::string& rel) const {
    return r_.from_context && r_.ignore && !rel.empty() && r_.ignore->excluded(rel);
  }

  std::vector<Source> expand_source(const std::string& arg) {
    std::string text = arg;
    // --parents keeps the path below a "/./" marker (or the whole relative path).
    std::string keep_from;
    if (r_.file.parents) {
      size_t marker = text.find("/./");
      if (marker != std::string::npos)
        keep_from = clean_in_root(text.substr(0, marker));
    }
    // The context is a root of its own, as for BuildKit: "../x" and "/x" are "x" inside it.
    std::string rel = clean_in_root(text);
    std::vector<std::string> matches;
    if (has_wildcard(rel)) {
      matches = glob(rel);
      // A wildcard matching nothing copies nothing, alone or not: BuildKit allows empty
      // wildcards (its COPY sets AllowEmptyWildcard).
      if (matches.empty())
        return {};
    } else {
      matches.push_back(rel);
    }
    std::vector<Source> out;
    for (const std::string& match : matches) {
      // The named source itself is followed when it is a symlink (BuildKit's FollowSymlinks).
      std::string resolved = resolve_in_root(r_.source_root, match);
      if (excluded_by_ignore(match)) {
        throw Error(
            "source " + describe(match) + " is excluded by " +
            (r_.ignore->source().empty() ? std::string("the ignore file") : r_.ignore->source()));
      }
      auto st = lstat_in_root(r_.source_root, resolved);
      if (!st) {
        std::string why;
        if (resolved != match) {
          why = " (a symbolic link on the way resolves to " + quote("/" + resolved) + " inside " +
                (r_.from_context ? "the build context" : "the source") + ", which does not exist)";
        }
        throw Error("source " + describe(match) + " not found" + why);
      }
      Source s;
      s.rel = resolved;
      s.name = base_name(match);
      s.is_dir = S_ISDIR(st->st_mode);
      if (r_.file.parents) {
        std::string parents = parent_of(match);
        if (!keep_from.empty() && (parents == keep_from || starts_with(parents, keep_from + "/"))) {
          parents = parents.substr(std::min(parents.size(), keep_from.size() + 1));
        }
        s.keep = s.is_dir ? join_rel(parents, base_name(match)) : parents;
        if (!keep_from.empty() && match == keep_from)
          s.keep.clear();
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  // Paths under the source root matching a pattern, component by component, sorted.
  std::vector<std::string> glob(const std::string& pattern) const {
    std::vector<std::string> current = {""};
    std::vector<std::string> parts = split(pattern, '/');
    for (size_t i = 0; i < parts.size(); ++i) {
      std::vector<std::string> next;
      for (const std::string& dir : current) {
        fs::path host = dir.empty() ? r_.source_root : r_.source_root / dir;
        if (!has_wildcard(parts[i])) {
          std::string candidate = join_rel(dir, parts[i]);
          if (fs::exists(fs::symlink_status(r_.source_root / candidate)))
            next.push_back(candidate);
          continue;
        }
        std::error_code ec;
        if (!fs::is_directory(host, ec))
          continue;
        for (const auto& entry : fs::directory_iterator(host, ec)) {
          std::string name = entry.path().filename().string();
          if (!frontend::shell_pattern_match(parts[i], name))
            continue;
          std::string candidate = join_rel(dir, name);
          if (excluded_by_ignore(candidate))
            continue;
          next.push_back(candidate);
        }
      }
      std::sort(next.begin(), next.end());
      current = std::move(next);
    }
    return current;
  }

  // --- copying --------------------------------------------------------------------------------

  void copy_source(const Source& s, bool into_dir) {
    if (r_.add() && !s.is_dir && !key_mode_ && is_archive(s.rel)) {
      extract_archive(s.rel, r_.file.parents ? join_rel(dest_, s.keep) : dest_);
      return;
    }
    std::string target;
    if (s.is_dir) {
      // A directory's contents go into the destination (the directory itself is not recreated).
      target = r_.file.parents ? join_rel(dest_, s.keep) : dest_;
      add_tree(r_.source_root, s.rel, target, s.rel, /*top=*/true);
      return;
    }
    if (r_.file.parents) {
      target = join_rel(join_rel(dest_, s.keep), s.name);
    } else {
      target = into_dir ? join_rel(dest_, s.name) : dest_;
    }
    add_file(r_.source_root, s.rel, target, s.rel);
  }

  bool is_excluded(const std::string& source_rel, const std::string& within) const {
    if (excluded_by_ignore(source_rel))
      return true;
    if (exclude_.empty())
      return false;
    return (!within.empty() && exclude_.excluded(within)) || exclude_.excluded(source_rel);
  }

  // `known`: the directory's lstat, when the caller has it (a parent's walk).
  void add_tree(const fs::path& root, const std::string& rel, const std::string& target,
                const std::string& top_rel, bool top, const struct stat* known = nullptr) {
    fs::path host = rel.empty() ? root : root / rel;
    struct stat st {};
    if (known) {
      st = *known;
    } else if (::lstat(host.c_str(), &st) != 0) {
      throw Error("stat " + describe(rel) + ": " + std::strerror(errno));
    }
    if (!top) {
      add_entry(host, st, target);
    } else if (!target.empty()) {
      add_dest_dir(target);
    }
    // Children are read and stat'ed relative to the directory's descriptor: one path component
    // to look up each, not the whole path from the root (20,000 files: most of a cached build).
    int fd = ::open(host.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* raw = fd < 0 ? nullptr : ::fdopendir(fd);
    if (!raw) {
      int error = errno;
      if (fd >= 0)
        ::close(fd);
      throw Error("read directory " + describe(rel) + ": " + std::strerror(error));
    }
    std::unique_ptr<DIR, int (*)(DIR*)> dir(raw, &::closedir);
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* d = ::readdir(dir.get())) {
      std::string_view name = d->d_name;
      if (name != "." && name != "..")
        names.emplace_back(name);
    }
    if (errno != 0)
      throw Error("read directory " + describe(rel) + ": " + std::strerror(errno));
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      std::string child = join_rel(rel, name);
      std::string within =
          child.substr(std::min(child.size(), top_rel.empty() ? 0 : top_rel.size() + 1));
      struct stat cst {};
      bool have = ::fstatat(::dirfd(dir.get()), name.c_str(), &cst, AT_SYMLINK_NOFOLLOW) == 0;
      if (is_excluded(child, within)) {
        // An excluded directory may still hold re-included paths (ignore-file exceptions).
        bool is_dir = have && S_ISDIR(cst.st_mode);
        if (!(is_dir && r_.from_context && r_.ignore && r_.ignore->may_reinclude_below(child))) {
          continue;
        }
      }
      if (!have)
        continue;
      if (S_ISDIR(cst.st_mode)) {
        add_tree(root, child, join_rel(target, name), top_rel, false, &cst);
      } else if (!is_excluded(child, within)) {
        add_entry(root / child, cst, join_rel(target, name));
      }
    }
  }

  void add_file(const fs::path& root, const std::string& rel, const std::string& target,
                const std::string& shown) {
    fs::path host = rel.empty() ? root : root / rel;
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0)
      throw Error("stat " + describe(shown) + ": " + std::strerror(errno));
    add_entry(host, st, target);
  }

  // An entry copied from the source: its metadata, with --chown/--chmod applied.
  void add_entry(const fs::path& host, const struct stat& st, const std::string& target) {
    if (S_ISSOCK(st.st_mode))
      return;
    LayerEntry e = snapshotter::entry_from_lstat(host, target, st);
    if (S_ISREG(st.st_mode) && st.st_nlink > 1)
      inodes_[target] = {source_group_, st.st_dev, st.st_ino};
    else
      inodes_.erase(target);
    if (r_.from_context)
      e.uid = e.gid = 0;
    if (r_.chown) {
      e.uid = r_.chown->uid;
      e.gid = r_.chown->gid;
    }
    if (r_.file.chmod && !S_ISLNK(st.st_mode)) {
      e.mode = (st.st_mode & S_IFMT) | r_.file.chmod->apply(st.st_mode, S_ISDIR(st.st_mode));
    }
    // The cache key hashes the file's content through the stat cache: the stat is at hand.
    if (key_mode_ && S_ISREG(st.st_mode))
      stats_[target] = st;
    entries_[target] = std::move(e);
  }

  // The destination directory of a directory copy. BuildKit makes it first (mkdir -p, 0755,
  // owned by --chown's user or root) and copies only the contents: an existing one keeps its
  // mode and owner, a new one never takes the source directory's. One that exists as anything
  // but a directory is an error.
  void add_dest_dir(const std::string& target) {
    std::optional<struct stat> existing;
    if (looks_at_dest())
      existing = lstat_in_root(r_.dest_root, target);
    if (existing && S_ISDIR(existing->st_mode))
      return;  // added with the parents, unchanged
    if (existing)
      throw Error("cannot copy to non-directory: " + quote("/" + target));
    LayerEntry e;
    e.path = target;
    e.mode = created_dir_mode();
    e.mtime_sec = r_.now;
    e.uid = r_.chown ? r_.chown->uid : 0;
    e.gid = r_.chown ? r_.chown->gid : 0;
    entries_[target] = std::move(e);
  }

  // A directory the copy makes (a missing parent, a directory copy's destination): 0755, or the
  // --chmod mode applied to it (BuildKit 0.21's fsutil gives created directories the --chmod
  // mode; earlier ones made them 0755).
  mode_t created_dir_mode() const {
    return S_IFDIR | (r_.file.chmod ? r_.file.chmod->apply(S_IFDIR | 0755, true) : 0755);
  }

  void add_created(LayerEntry e) {
    if (r_.chown) {
      e.uid = r_.chown->uid;
      e.gid = r_.chown->gid;
    }
    if (r_.file.chmod)
      e.mode = (e.mode & S_IFMT) | r_.file.chmod->apply(e.mode, S_ISDIR(e.mode));
    entries_[e.path] = std::move(e);
  }

  // Every parent of an entry appears in the layer: with its metadata from the stage when it
  // exists there (so applying the layer changes nothing about it), else created 0755.
  void add_parents() {
    std::vector<std::string> parents;
    for (const auto& [path, entry] : entries_) {
      for (std::string p = parent_of(path); !p.empty(); p = parent_of(p))
        parents.push_back(p);
    }
    for (const std::string& p : parents) {
      if (entries_.contains(p))
        continue;
      LayerEntry e;
      e.path = p;
      std::optional<struct stat> st;
      if (looks_at_dest())
        st = lstat_in_root(r_.dest_root, p);
      if (st && S_ISDIR(st->st_mode)) {
        e.mode = st->st_mode;
        e.uid = st->st_uid;
        e.gid = st->st_gid;
        e.mtime_sec = st->st_mtim.tv_sec;
        e.mtime_nsec = st->st_mtim.tv_nsec;
      } else {
        // Made as BuildKit's mkdir -p makes them: 0755 (--chmod's mode when given), owned by
        // --chown's user (or root).
        e.mode = created_dir_mode();
        e.mtime_sec = r_.now;
        e.uid = r_.chown ? r_.chown->uid : 0;
        e.gid = r_.chown ? r_.chown->gid : 0;
      }
      entries_[p] = std::move(e);
    }
  }

  // Files one source (a directory walk) holds hard-linked together stay linked at the
  // destination, as BuildKit keeps them: the first (in path order) carries the content, the
  // others are links to it. Separate sources are copied separately, as BuildKit does.
  void link_hard_links() {
    std::map<std::tuple<size_t, dev_t, ino_t>, std::string> first;
    for (const auto& [target, inode] : inodes_) {
      auto it = entries_.find(target);
      if (it == entries_.end() || !S_ISREG(it->second.mode))
        continue;
      auto [seen, added] = first.emplace(inode, target);
      if (added)
        continue;
      LayerEntry& e = it->second;
      e.hardlink = true;
      e.link_target = seen->second;
      e.source.clear();
      e.content.reset();
    }
  }

  // --- ADD archives ---------------------------------------------------------------------------

  bool is_archive(const std::string& rel) const { return oci::is_tar(r_.source_root / rel); }

  // Extracts a local archive (oci/tar_extract.hpp: hostile input, every write checked, bounded
  // expansion). ".." is refused with its own message, like the layer applier refuses it: no
  // honest archive climbs out of where it is extracted.
  void extract_archive(const std::string& rel, const std::string& target) {
    TempDir dir;
    oci::ExtractOptions options;
    options.xattrs = true;
    options.owners = ::geteuid() == 0;
    std::set<std::string> listed_dirs;  // directories the archive has entries for
    const std::string what = "ADD " + describe(rel) + ": cannot extract archive";
    options.on_entry = [&](archive_entry* entry) {
      for (const char* named : {archive_entry_pathname(entry), archive_entry_hardlink(entry)}) {
        if (named && has_dotdot(named)) {
          throw Error(what + ": entry " + quote(archive_entry_pathname(entry)) +
                      " climbs out of the archive with \"..\" (" + quote(named) + ")");
        }
      }
      if (archive_entry_filetype(entry) == AE_IFDIR && !archive_entry_hardlink(entry))
        listed_dirs.insert(clean_in_root(archive_entry_pathname(entry)));
    };
    oci::extract_tar(r_.source_root / rel, dir.path(), what, options);
    // The archive's own ownership is kept (unless --chown): walk it like another stage's files.
    CopyRequest inner = r_;
    inner.file.chmod.reset();  // extracted entries keep the archive's modes (BuildKit)
    inner.from_context = false;
    inner.ignore = nullptr;
    inner.source_root = dir.path();
    Planner sub(inner, false);
    sub.dest_ = dest_;
    sub.source_group_ = source_group_;
    sub.add_tree(dir.path(), "", target, "", /*top=*/true);
    for (auto& [path, e] : sub.entries_) {
      std::string within =
          path == target ? std::string() : path.substr(target.empty() ? 0 : target.size() + 1);
      if (S_ISDIR(e.mode) && !listed_dirs.count(within))
        implied_dir(e);
      entries_[path] = std::move(e);
    }
    inodes_.insert(sub.inodes_.begin(), sub.inodes_.end());
    scratch_.push_back(std::move(dir));
  }

  static bool has_dotdot(std::string_view path) {
    for (const std::string& component : split(path, '/')) {
      if (component == "..")
        return true;
    }
    return false;
  }

  // A directory an ADD archive implies (it holds entries) but has no entry for: it must not
  // change an existing directory (an image's /tmp 1777 stays so), and a new one is made as
  // add_parents() makes them, not with whatever the extraction happened to give it.
  void implied_dir(LayerEntry& e) const {
    std::optional<struct stat> st;
    if (looks_at_dest())
      st = lstat_in_root(r_.dest_root, e.path);
    if (st && S_ISDIR(st->st_mode)) {
      e.mode = st->st_mode;
      e.uid = st->st_uid;
      e.gid = st->st_gid;
      e.mtime_sec = st->st_mtim.tv_sec;
      e.mtime_nsec = st->st_mtim.tv_nsec;
      return;
    }
    e.mode = S_IFDIR | 0755;
    e.uid = r_.chown ? r_.chown->uid : 0;
    e.gid = r_.chown ? r_.chown->gid : 0;
    e.mtime_sec = r_.now;
    e.mtime_nsec = 0;
  }

  bool looks_at_dest() const { return !r_.file.link && !key_mode_; }

  const CopyRequest& r_;
  bool key_mode_;
  std::unordered_map<std::string, struct stat> stats_;  // key mode: regular files, by target
  std::string dest_;
  frontend::IgnoreMatcher exclude_;
  std::vector<const frontend::InlineFile*> heredocs_;
  std::vector<const DownloadedSource*> downloads_;
  std::map<std::string, LayerEntry> entries_;
  // Entries of hard-linked source files: the source they came from, and their inode.
  std::map<std::string, std::tuple<size_t, dev_t, ino_t>> inodes_;
  size_t source_group_ = 0;
  std::vector<TempDir> scratch_;
};

}  // namespace

CopyPlan plan_copy(const CopyRequest& request) {
  return Planner(request, false).run();
}

std::string copy_source_digest(const CopyRequest& request, const FileHasher& file_hash,
                               std::vector<std::string>* listing) {
  CopyPlan plan = Planner(request, true).run();
  // One line per entry, sorted by destination path: everything that ends up in the layer except
  // times (a touch or a fresh checkout keeps the cache).
  oci::Sha256 hash;
  for (const LayerEntry& e : plan.entries) {
    std::string line = e.path;
    line += '\0';
    line += std::to_string(e.mode) + " " + std::to_string(e.uid) + ":" + std::to_string(e.gid);
    if (e.hardlink) {
      line += " link " + e.link_target;
    } else if (S_ISLNK(e.mode)) {
      line += " -> " + e.link_target;
    } else if (S_ISCHR(e.mode) || S_ISBLK(e.mode)) {
      line += " dev " + std::to_string(e.dev_major) + "," + std::to_string(e.dev_minor);
    } else if (S_ISREG(e.mode)) {
      if (e.content) {
        line += " inline " + oci::sha256_of(*e.content).hex();
      } else if (!e.source.empty()) {
        auto known = plan.source_stats.find(e.path);
        struct stat st {};
        if (known != plan.source_stats.end())
          st = known->second;
        else if (::lstat(e.source.c_str(), &st) != 0)
          throw Error("stat " + e.source.string() + ": " + std::strerror(errno));
        line += " " + file_hash(e.source, st);
      }
    }
    line += '\n';
    hash.update(line);
    if (listing) {
      // Named by the source's path in the context where there is one (a file copied to /app/x
      // is "src/x" to the user), else by its path in the layer.
      std::string name = e.path;
      if (!e.source.empty() && request.from_context) {
        fs::path relative = e.source.lexically_relative(request.source_root);
        if (!relative.empty() && *relative.begin() != "..")
          name = relative.string();
      }
      listing->push_back(name + "\t" + oci::sha256_of(line).hex().substr(0, 16));
    }
  }
  if (listing)
    std::sort(listing->begin(), listing->end());
  return hash.finish().hex();
}

}  // namespace kiln::solver
