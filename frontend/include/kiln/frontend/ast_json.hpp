// The syntax tree as JSON, for `kiln parse` and for tools and tests that read it.
//
// The shape is stable: keys appear in a fixed order and optional keys appear only when they apply.
//   {"file", "escape", "directives": [{"name","value","line"}],
//    "instructions": [{"name" (upper case), "keyword" (as written), "line", "column", "end_line",
//                      "flags": [{"name","value"?,"line","column"}], "args": [..], "json",
//                      "pairs"?: [{"key","value"?}], "heredocs"?: [{"name","content","expand",
//                      "chomp","fd","line"}], "health_type"?, "trigger"?: {instruction}}],
//    "warnings": [{"line","column","message"}]}
#pragma once

#include <nlohmann/json.hpp>

#include "kiln/frontend/ast.hpp"

namespace kiln::frontend {

nlohmann::ordered_json to_json(const Containerfile& file);
nlohmann::ordered_json to_json(const Instruction& instruction);

}  // namespace kiln::frontend
