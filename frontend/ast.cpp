#include "kiln/frontend/ast.hpp"

#include <array>
#include <utility>

#include "kiln/base/strings.hpp"

namespace kiln::frontend {
namespace {

constexpr std::array<std::pair<InstructionKind, const char*>, 18> kKeywords{{
    {InstructionKind::kFrom, "FROM"},
    {InstructionKind::kRun, "RUN"},
    {InstructionKind::kCmd, "CMD"},
    {InstructionKind::kLabel, "LABEL"},
    {InstructionKind::kMaintainer, "MAINTAINER"},
    {InstructionKind::kExpose, "EXPOSE"},
    {InstructionKind::kEnv, "ENV"},
    {InstructionKind::kAdd, "ADD"},
    {InstructionKind::kCopy, "COPY"},
    {InstructionKind::kEntrypoint, "ENTRYPOINT"},
    {InstructionKind::kVolume, "VOLUME"},
    {InstructionKind::kUser, "USER"},
    {InstructionKind::kWorkdir, "WORKDIR"},
    {InstructionKind::kArg, "ARG"},
    {InstructionKind::kOnbuild, "ONBUILD"},
    {InstructionKind::kStopsignal, "STOPSIGNAL"},
    {InstructionKind::kHealthcheck, "HEALTHCHECK"},
    {InstructionKind::kShell, "SHELL"},
}};

}  // namespace

const char* keyword_of(InstructionKind kind) {
  for (const auto& [k, name] : kKeywords) {
    if (k == kind)
      return name;
  }
  return "?";
}

std::optional<InstructionKind> instruction_kind_from_keyword(std::string_view keyword) {
  for (const auto& [k, name] : kKeywords) {
    if (iequals(keyword, name))
      return k;
  }
  return std::nullopt;
}

const Flag* Instruction::find_flag(std::string_view name) const {
  for (const Flag& flag : flags) {
    if (flag.name == name)
      return &flag;
  }
  return nullptr;
}

std::vector<const Flag*> Instruction::find_flags(std::string_view name) const {
  std::vector<const Flag*> found;
  for (const Flag& flag : flags) {
    if (flag.name == name)
      found.push_back(&flag);
  }
  return found;
}

std::optional<std::string> Containerfile::directive(std::string_view name) const {
  for (const Directive& d : directives) {
    if (d.name == name)
      return d.value;
  }
  return std::nullopt;
}

}  // namespace kiln::frontend
