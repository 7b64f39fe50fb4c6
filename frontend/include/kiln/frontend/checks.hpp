// Build checks: BuildKit's Containerfile lint rules, with its rule names and meaning.
//
// A check never changes what a build does; it reports. Rules (BuildKit's set as of its 0.16+
// frontend) fall in two groups:
//   * file rules, over every stage: StageNameCasing, FromAsCasing, NoEmptyContinuation,
//     ConsistentInstructionCasing, DuplicateStageName, ReservedStageName, MaintainerDeprecated,
//     UndefinedArgInFrom, RedundantTargetPlatform, FromPlatformFlagConstDisallowed,
//     InvalidDefaultArgInFrom, InvalidDefinitionDescription (experimental);
//   * stage rules, over the stages checked (those the target needs; with no target, all):
//     JSONArgsRecommended, WorkdirRelativePath, UndefinedVar, MultipleInstructionsDisallowed,
//     LegacyKeyValueFormat, InvalidBaseImagePlatform, SecretsUsedInArgOrEnv, ExposeProtoCasing,
//     ExposeInvalidFormat, CopyIgnoredFile.
// Rules that need a base image's config (UndefinedVar reads its ENV, JSONArgsRecommended its
// Shell, InvalidBaseImagePlatform its platform) skip a stage whose base was not looked up, and the
// report says so.
//
// Settings: the `# check=skip=RULE,...|all;error=true|false;experimental=RULE,...|all` directive,
// replaced as a whole by a BUILDKIT_DOCKERFILE_CHECK build argument; a `# check=` comment right
// above an instruction adds skips for that instruction's own rules. Experimental rules run only
// when named by experimental= (skip= does not apply to them).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/frontend/ast.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"

namespace kiln::frontend {

struct CheckConfig {
  bool skip_all = false;
  std::set<std::string> skip;
  bool experimental_all = false;
  std::set<std::string> experimental;
  bool error = false;  // error=true: findings fail the build
};

// Parses "skip=A,B;error=true;experimental=all" (BuildKit's syntax: at most three `;`-separated
// NAME=VALUE parts; text after the first space is a comment). Throws kiln::Error
// ("invalid check option ...") for anything else.
CheckConfig parse_check_config(std::string_view value);

struct CheckRule {
  const char* name;         // "StageNameCasing"
  const char* description;  // BuildKit's one-line description
  const char* fix;          // how to fix it, one line, no link
  bool experimental = false;
};
const std::vector<CheckRule>& check_rules();
// The rule named `name`; nullptr when there is none.
const CheckRule* find_check_rule(std::string_view name);
// BuildKit's documentation page of a rule (for JSON consumers of BuildKit's format).
std::string check_rule_url(const CheckRule& rule);

struct CheckFinding {
  const CheckRule* rule = nullptr;
  SourceLocation where;
  int end_line = 0;     // the instruction's last line
  std::string message;  // BuildKit's message, e.g. "Stage name 'Build' should be lowercase"
};

struct CheckOptions {
  // BUILDKIT_DOCKERFILE_CHECK, when given as a build argument: replaces the file's directive.
  std::optional<std::string> config_override;
  // The stages the stage rules look at (indexes into the plan); nullopt: every stage.
  std::optional<std::set<size_t>> stages;
  const IgnoreMatcher* ignore = nullptr;  // the context's rules, for CopyIgnoredFile
  std::string ignore_file_name = ".dockerignore";
};

struct CheckReport {
  CheckConfig config;
  std::vector<CheckFinding> findings;  // by line
  std::vector<std::string> notes;      // what could not be checked, and why
  bool failed() const { return config.error && !findings.empty(); }
};

// Runs the rules over a parsed file and its plan (plan_build of the same file; file and plan
// warnings that carry a rule name are findings too). Throws kiln::InputError at the directive for
// a malformed `# check=`, kiln::Error for a malformed BUILDKIT_DOCKERFILE_CHECK.
CheckReport run_checks(const Containerfile& file, const BuildPlan& plan,
                       const CheckOptions& options);

// Whether an ARG/ENV name looks like it holds a credential (SecretsUsedInArgOrEnv's rule, also
// used to redact build args in provenance): one of its `_`-separated words, in any case, is
// apikey, auth, credential(s), key, password, pword, passwd, secret or token, and none is
// public, file or version.
bool looks_like_secret_name(std::string_view key);

// "FILE:LINE:COL: warning: RULE: message", then "  fix: ..." on the next line.
std::string format_finding(const CheckFinding& finding);

}  // namespace kiln::frontend
