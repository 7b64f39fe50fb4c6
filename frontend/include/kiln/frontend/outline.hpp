// What a Containerfile offers its user, without building: `kiln build --call outline` (the
// target's build arguments with defaults and descriptions, the secrets and SSH ids it uses) and
// `--call targets` (the stages with descriptions). BuildKit's subrequests, same fields.
//
// Descriptions come from the comment lines right above a FROM or ARG (Instruction::comments):
// the first one that starts with the stage's (lower-case) name or the ARG's name and a space,
// without that prefix: `# version the Go release to build with` above `ARG version=1.22`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/frontend/ast.hpp"
#include "kiln/frontend/build_plan.hpp"

namespace kiln::frontend {

// The description `comments` give `name`; empty when none does.
std::string doc_comment(const std::vector<std::string>& comments, const std::string& name);

struct OutlineArg {
  std::string name;
  std::string description;
  std::optional<std::string> value;  // the default, after --build-arg; nullopt when none
  SourceLocation where;              // the ARG that declares it
};

struct OutlineUse {  // a secret or an SSH agent a RUN mounts
  std::string name;  // secret: the id (else the target's file name); ssh: the id ("default")
  bool required = false;
  SourceLocation where;
};

struct Outline {
  std::string name;  // the target stage's name; empty when unnamed
  std::string description;
  std::vector<OutlineArg> args;  // what the target and the stages it needs read, by line
  std::vector<OutlineUse> secrets, ssh;
};

// From a plan of the file (plan_build with the same --target and --build-args): only the stages
// the target needs count. Throws kiln::InputError for a malformed RUN --mount.
Outline make_outline(const Containerfile& file, const BuildPlan& plan);
nlohmann::ordered_json outline_to_json(const Outline& outline);
std::string outline_text(const Outline& outline);

struct TargetInfo {
  std::string name;         // lower-case; empty when unnamed
  bool is_default = false;  // the last stage: what a build without --target makes
  std::string description;
  std::string base;      // FROM's image or stage, as written
  std::string platform;  // FROM --platform, as written
  SourceLocation where;
};

std::vector<TargetInfo> list_targets(const Containerfile& file);
nlohmann::ordered_json targets_to_json(const std::vector<TargetInfo>& targets);
std::string targets_text(const std::vector<TargetInfo>& targets);

// BuildKit's location object for a range of lines: {"ranges":[{"start":{"line":N},"end":...}]}.
nlohmann::ordered_json location_json(int first_line, int last_line);

}  // namespace kiln::frontend
