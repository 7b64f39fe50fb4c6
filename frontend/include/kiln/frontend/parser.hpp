// Containerfile → syntax tree.
//
// The parser accepts what BuildKit's dockerfile frontend accepts: every instruction, JSON and
// shell forms, parser directives, line continuations, here-documents, CRLF and a UTF-8 BOM. It
// does not expand variables or resolve stages (see build_plan.hpp). Thread-safe: no shared state.
#pragma once

#include <filesystem>
#include <istream>
#include <string>
#include <string_view>

#include "kiln/frontend/ast.hpp"

namespace kiln::frontend {

// The largest Containerfile kiln reads (a device or an endless pipe must not be read without
// bound).
inline constexpr size_t kMaxContainerfileBytes = size_t{16} << 20;

// Reads a whole Containerfile from `in`; throws kiln::Error naming `name` when it is larger than
// kMaxContainerfileBytes or cannot be read.
std::string read_bounded(std::istream& in, const std::string& name);

// Parses the bytes of a Containerfile. `filename` is used only in positions and messages.
// Throws kiln::InputError ("FILE:LINE:COL: cause") on the first error in the file.
Containerfile parse_containerfile(std::string_view bytes, const std::string& filename);

// Reads and parses a file. Throws kiln::Error when it cannot be read, InputError when it is
// malformed. Positions use `display_name` when given, else the path as passed.
Containerfile read_containerfile(const std::filesystem::path& path,
                                 const std::string& display_name = {});

}  // namespace kiln::frontend
