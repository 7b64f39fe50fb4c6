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
  if (file == "-") {
    std::string bytes{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    return frontend::parse_containerfile(bytes, "<stdin>");
  }
  std::filesystem::path path = containerfile_path(file, context);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error("cannot read Containerfile " + path.string() + ": no such file");
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
