#include "kiln/session/context_source.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/base/subprocess.hpp"
#include "kiln/oci/layer_blob.hpp"
#include "kiln/solver/url_fetch.hpp"

namespace kiln::session {
namespace fs = std::filesystem;

struct ContextSource::Scratch {
  TempDir dir{{}, "kiln-context-"};
};

ContextSource::ContextSource(ContextSource&&) noexcept = default;
ContextSource& ContextSource::operator=(ContextSource&&) noexcept = default;
ContextSource::~ContextSource() = default;

namespace {

bool is_archive(const fs::path& file) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a)
    return false;
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_entry* entry = nullptr;
  return archive_read_open_filename(a.get(), file.c_str(), 1 << 16) == ARCHIVE_OK &&
         archive_read_next_header(a.get(), &entry) == ARCHIVE_OK;
}

// Unpacks a tar archive into `dir`: no "..", no absolute names outside, no writes through
// symlinks, bounded expansion, every write checked.
void unpack(const fs::path& file, const fs::path& dir, const std::string& what) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  std::unique_ptr<archive, decltype(&archive_write_free)> out(archive_write_disk_new(),
                                                              archive_write_free);
  auto fail = [&](archive* from, const std::string& fallback) {
    const char* msg = from ? archive_error_string(from) : nullptr;
    throw Error("build context " + what + ": " + (msg ? msg : fallback));
  };
  if (!a || !out)
    fail(nullptr, "out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    fail(a.get(), "cannot open the archive");
  std::error_code ec;
  const uint64_t limit = oci::expansion_limit(fs::file_size(file, ec));
  uint64_t declared = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK)
      fail(a.get(), "corrupt archive");
    if (archive_entry_size_is_set(entry))
      declared += static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(entry), 0));
    if (declared > limit) {
      fail(nullptr, "its files claim more than " + std::to_string(limit) +
                        " bytes, the limit for the archive's size");
    }
    // Absolute names are taken inside the context; ".." is refused by SECURE_NODOTDOT.
    std::string name = archive_entry_pathname(entry);
    while (name.starts_with("/") || name.starts_with("./"))
      name.erase(0, name.starts_with("/") ? 1 : 2);
    if (name.empty() || name == ".")
      continue;
    std::string path = (dir / name).string();
    archive_entry_set_pathname(entry, path.c_str());
    if (const char* link = archive_entry_hardlink(entry)) {
      std::string target = link;
      while (target.starts_with("/") || target.starts_with("./"))
        target.erase(0, target.starts_with("/") ? 1 : 2);
      std::string target_path = (dir / target).string();
      archive_entry_set_hardlink(entry, target_path.c_str());
    }
    if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
      fail(out.get(), "cannot unpack " + quote(name));
    const void* buf;
    size_t size;
    la_int64_t offset;
    int data;
    while ((data = archive_read_data_block(a.get(), &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out.get(), buf, size, offset) != ARCHIVE_OK)
        fail(out.get(), "cannot write " + quote(name));
    }
    if (data != ARCHIVE_EOF)
      fail(a.get(), "corrupt archive data");
    if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
      fail(out.get(), "cannot finish " + quote(name));
  }
  if (archive_write_close(out.get()) != ARCHIVE_OK)
    fail(out.get(), "cannot finish unpacking");
}

// Runs git with `args`; throws naming the URL and git's last words on failure.
void git(const std::vector<std::string>& args, const std::string& url, const fs::path& log) {
  std::vector<std::string> argv = {"git"};
  argv.insert(argv.end(), args.begin(), args.end());
  int status = 0;
  try {
    status = run_to_end(argv, log);
  } catch (const Error& e) {
    throw Error("build context " + url + ": " + e.what() +
                " (install git to build from a repository)");
  }
  if (status != 0) {
    const std::string& command = args.front() == "-C" && args.size() > 2 ? args[2] : args.front();
    std::string said = last_line_of(log);
    throw Error("build context " + url + ": git " + command + " failed" +
                (said.empty() ? std::string() : ": " + said));
  }
}

}  // namespace

bool ContextSource::is_git_url(const std::string& spec) {
  std::string base = spec.substr(0, spec.find('#'));
  if (spec.starts_with("git://") || spec.starts_with("git@") || spec.starts_with("ssh://"))
    return true;
  return (spec.starts_with("https://") || spec.starts_with("http://")) &&
         (base.ends_with(".git") || base.ends_with(".git/"));
}

ContextSource ContextSource::open(const std::string& spec, std::istream& in) {
  ContextSource source;
  std::error_code ec;
  if (spec != "-" && !is_git_url(spec) && !spec.starts_with("http://") &&
      !spec.starts_with("https://")) {
    fs::path path(spec);
    if (fs::is_directory(path, ec)) {
      source.dir_ = path;
      source.description_ = spec;
      return source;
    }
    if (!fs::exists(path, ec))
      throw Error("build context " + spec + " does not exist");
    if (!fs::is_regular_file(path, ec) || !is_archive(path)) {
      throw Error("build context " + spec +
                  " is neither a directory nor a tar archive (a Containerfile goes with -f)");
    }
    source.scratch_ = std::make_unique<Scratch>();
    source.dir_ = source.scratch_->dir.path() / "context";
    fs::create_directories(source.dir_);
    unpack(path, source.dir_, spec);
    source.description_ = spec;
    return source;
  }
  source.scratch_ = std::make_unique<Scratch>();
  const fs::path scratch = source.scratch_->dir.path();
  source.dir_ = scratch / "context";
  fs::create_directories(source.dir_);
  if (spec == "-") {
    source.description_ = "standard input";
    fs::path file = scratch / "stdin";
    {
      std::ofstream out(file, std::ios::binary);
      std::copy(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(),
                std::ostreambuf_iterator<char>(out));
      out.close();
      if (!out)
        throw Error("build context from standard input: cannot store it in " + file.string());
    }
    if (fs::file_size(file, ec) > 0 && is_archive(file)) {
      unpack(file, source.dir_, "from standard input");
    } else {
      std::string text = read_file(file);
      if (text.empty())
        throw Error("build context from standard input: standard input is empty");
      source.stdin_containerfile_ = text;
      fs::rename(file, source.dir_ / "Dockerfile");
    }
    return source;
  }
  if (!is_git_url(spec)) {
    source.description_ = spec;
    fs::path file;
    try {
      file = solver::fetch_url(spec, scratch, std::nullopt).file;
    } catch (const Error& e) {
      throw Error(std::string("build context: ") + e.what());
    }
    if (!is_archive(file)) {
      throw Error("build context " + spec +
                  ": what it served is not a tar archive (a Containerfile goes with -f)");
    }
    unpack(file, source.dir_, spec);
    return source;
  }
  // A repository: URL#REF:SUBDIR.
  source.description_ = spec;
  std::string url = spec, fragment;
  if (size_t hash = spec.find('#'); hash != std::string::npos) {
    url = spec.substr(0, hash);
    fragment = spec.substr(hash + 1);
  }
  std::string ref = fragment.substr(0, fragment.find(':'));
  std::string subdir =
      fragment.find(':') == std::string::npos ? "" : fragment.substr(fragment.find(':') + 1);
  fs::path log = scratch / "git.log";
  std::string repo = (scratch / "repo").string();
  git({"init", "-q", repo}, url, log);
  try {
    git({"-C", repo, "fetch", "-q", "--depth", "1", "--", url, ref.empty() ? "HEAD" : ref}, url,
        log);
  } catch (const Error&) {
    // A server without shallow fetches (git's "dumb" HTTP) gets the whole history instead.
    git({"-C", repo, "fetch", "-q", "--", url, ref.empty() ? "HEAD" : ref}, url, log);
  }
  git({"-C", repo, "checkout", "-q", "FETCH_HEAD"}, url, log);
  fs::remove_all(fs::path(repo) / ".git", ec);
  fs::path dir = fs::path(repo) / subdir;
  fs::path real = fs::weakly_canonical(dir, ec);
  fs::path root = fs::weakly_canonical(repo, ec);
  std::string real_s = real.string(), root_s = root.string();
  if (real_s != root_s && !real_s.starts_with(root_s + "/"))
    throw Error("build context " + spec + ": " + quote(subdir) + " leaves the repository");
  if (!fs::is_directory(dir, ec))
    throw Error("build context " + spec + ": " + quote(subdir) + " is not a directory in it");
  fs::remove_all(source.dir_, ec);
  source.dir_ = dir;
  return source;
}

}  // namespace kiln::session
