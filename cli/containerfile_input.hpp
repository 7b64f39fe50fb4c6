// Finding and reading the Containerfile a command names.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "kiln/frontend/ast.hpp"

namespace kiln::cli {

// `file` as given with -f ("-" is standard input), or empty to look in `context` for
// Containerfile, then Dockerfile. Throws kiln::Error when there is none or it cannot be read,
// kiln::InputError when it is malformed.
frontend::Containerfile load_containerfile(const std::string& file,
                                           const std::filesystem::path& context);

// The path load_containerfile reads (for ignore-file lookup); "-" for standard input.
std::filesystem::path containerfile_path(const std::string& file,
                                         const std::filesystem::path& context);

// Prints warnings as "WARNING: FILE:LINE:COL: message".
// "WARNING: FILE:LINE:COL: message"
std::string format_warning(const frontend::Warning& warning);
void print_warnings(const std::vector<frontend::Warning>& warnings, std::ostream& err);

}  // namespace kiln::cli
