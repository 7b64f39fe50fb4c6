// libFuzzer target: no input may crash the frontend. Every rejection must be a kiln::Error (which
// carries a position); any other exception, a sanitizer report or a hang is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kiln/base/error.hpp"
#include "kiln/frontend/ast_json.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/frontend/parser.hpp"
#include "kiln/frontend/shell_lexer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    kiln::frontend::Containerfile file = kiln::frontend::parse_containerfile(text, "fuzz");
    (void)kiln::frontend::to_json(file).dump();
    kiln::frontend::BuildOptions options;
    options.build_platform = {"linux", "amd64", ""};
    options.target_platform = {"linux", "arm64", ""};
    kiln::frontend::BuildPlan plan = kiln::frontend::plan_build(file, options);
    (void)kiln::frontend::describe_plan(plan);
  } catch (const kiln::Error&) {
  }
  try {
    kiln::frontend::ShellLexer lexer;
    (void)lexer.expand_words(text, [](std::string_view name) -> std::optional<std::string> {
      if (name == "A")
        return "a b";
      return std::nullopt;
    });
  } catch (const kiln::frontend::ExpansionError&) {
  }
  try {
    kiln::frontend::IgnoreMatcher matcher = kiln::frontend::IgnoreMatcher::parse(text, "fuzz");
    (void)matcher.excluded("a/b/c.txt");
    (void)matcher.may_reinclude_below("a");
  } catch (const kiln::Error&) {
  }
  return 0;
}
