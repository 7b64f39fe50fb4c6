#include "containerfile_input.hpp"

#include <iostream>
#include <iterator>

#include "kiln/base/error.hpp"
#include "kiln/frontend/parser.hpp"

namespace kiln::cli {

std::filesystem::path containerfile_path(const std::string& file,
                                         const std::filesystem::path& context) {
  if (!file.empty())
    return file;
  for (const char* name : {"Containerfile", "Dockerfile"}) {
    std::error_code ec;
    if (std::filesystem::exists(context / name, ec))
      return context / name;
  }
  throw Error("no Containerfile or Dockerfile in " + context.string() + "; name one with -f FILE");
}

frontend::Containerfile load_containerfile(const std::string& file,
                                           const std::filesystem::path& context) {
  if (file == "-")
    return frontend::parse_containerfile(frontend::read_bounded(std::cin, "<stdin>"), "<stdin>");
  namespace fs = std::filesystem;
  fs::path path = containerfile_path(file, context);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error("cannot read Containerfile " + path.string() + ": no such file");
  }
  // A Containerfile inside the context that is a symlink must stay inside it: a context from
  // elsewhere must not make kiln read (and print in errors) any file of this machine.
  if (fs::is_symlink(path, ec)) {
    fs::path root = fs::weakly_canonical(context, ec);
    fs::path here = fs::weakly_canonical(path.parent_path(), ec) / path.filename();
    fs::path target = fs::weakly_canonical(path, ec);
    auto inside = [](const fs::path& p, const fs::path& dir) {
      auto rel = p.lexically_relative(dir);
      return !rel.empty() && *rel.begin() != "..";
    };
    if (inside(here, root) && !inside(target, root)) {
      throw Error("Containerfile " + path.string() + " is a symlink to " + target.string() +
                  ", outside the build context " + context.string());
    }
  }
  return frontend::read_containerfile(path);
}

std::string format_warning(const frontend::Warning& w) {
  return "WARNING: " + w.where.to_string() + ": " + w.message;
}

void print_warnings(const std::vector<frontend::Warning>& warnings, std::ostream& err) {
  for (const frontend::Warning& w : warnings)
    err << format_warning(w) << "\n";
}

}  // namespace kiln::cli
