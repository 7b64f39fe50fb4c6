// Where a build's context comes from, in the forms buildah, podman build and docker build take
// for CONTEXT:
//   DIR                         a directory, used in place;
//   -                           standard input: a tar archive (plain or compressed, as libarchive
//                               detects) unpacked as the context, or anything else taken as the
//                               Containerfile alone, with an empty context;
//   FILE                        a local tar archive (any compression), unpacked;
//   http(s)://HOST/PATH         a tar archive downloaded (http and https only), unpacked;
//   git URL                     https://HOST/REPO.git[#REF[:SUBDIR]], git@HOST:REPO.git[#...],
//                               git://..., or ssh://...: fetched with the git command line (the
//                               REF, default HEAD, at depth 1), .git removed, SUBDIR the context.
// Archives are hostile input: entries climbing out with "..", absolute names and writes through
// symlinks are refused, and expansion is bounded (oci::expansion_limit). What is fetched or
// unpacked lives in a temporary directory owned by the ContextSource and removed with it (and on
// SIGINT/SIGTERM, base/cleanup.hpp).
#pragma once

#include <filesystem>
#include <istream>
#include <memory>
#include <optional>
#include <string>

namespace kiln::session {

class ContextSource {
 public:
  // Materializes `spec` (see above); `in` is read when spec is "-". Throws kiln::Error naming
  // the spec and the cause: a missing path, a download or git failure, a bad archive.
  static ContextSource open(const std::string& spec, std::istream& in);

  ContextSource(ContextSource&&) noexcept;
  ContextSource& operator=(ContextSource&&) noexcept;
  ~ContextSource();

  // The context directory.
  const std::filesystem::path& dir() const { return dir_; }
  // The Containerfile that standard input held, for "-" when it was not an archive (it is
  // also written to dir()/Dockerfile).
  const std::optional<std::string>& stdin_containerfile() const { return stdin_containerfile_; }
  // What the spec named, for messages ("standard input", the URL, the archive).
  const std::string& description() const { return description_; }

  // Whether `spec` names a git repository by the rules above.
  static bool is_git_url(const std::string& spec);

 private:
  ContextSource() = default;
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
  std::filesystem::path dir_;
  std::optional<std::string> stdin_containerfile_;
  std::string description_;
};

}  // namespace kiln::session
