#include "kiln/solver/context_digest.hpp"

#include "content_hasher.hpp"
#include "copy.hpp"

namespace kiln::solver {

std::string context_digest(const std::filesystem::path& stat_cache_dir,
                           const std::filesystem::path& context,
                           const frontend::IgnoreMatcher& ignore) {
  std::filesystem::path root = std::filesystem::canonical(context);
  ContentHasher hasher(stat_cache_dir, root);
  CopyRequest request;
  request.file.sources = {"."};
  request.file.dest.assign(1, '/');  // (a literal here trips GCC 12's -Wrestrict)
  request.source_root = root;
  request.ignore = &ignore;
  std::string digest =
      copy_source_digest(request, [&](const std::filesystem::path& path, const struct stat& st) {
        return hasher.file_hash(path, st);
      });
  hasher.save();
  return digest;
}

}  // namespace kiln::solver
