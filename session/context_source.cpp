#include "kiln/session/context_source.hpp"

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
#include "kiln/oci/tar_extract.hpp"
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
    if (!fs::is_regular_file(path, ec) || !oci::is_tar(path)) {
      throw Error("build context " + spec +
                  " is neither a directory nor a tar archive (a Containerfile goes with -f)");
    }
    source.scratch_ = std::make_unique<Scratch>();
    source.dir_ = source.scratch_->dir.path() / "context";
    fs::create_directories(source.dir_);
    oci::extract_tar(path, source.dir_, "build context " + spec);
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
    if (fs::file_size(file, ec) > 0 && oci::is_tar(file)) {
      oci::extract_tar(file, source.dir_, "build context from standard input");
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
    if (!oci::is_tar(file)) {
      throw Error("build context " + spec +
                  ": what it served is not a tar archive (a Containerfile goes with -f)");
    }
    oci::extract_tar(file, source.dir_, "build context " + spec);
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
