// The Containerfile syntax tree.
//
// The tree records what the file says, not what it means: arguments are kept as written (quotes and
// variable references intact, except where the Dockerfile syntax itself removes them, as in JSON
// form and flag values). Expansion and ARG/ENV scoping happen in build_plan.hpp. Every node carries
// the position of its first character in the original file (1-based line, code-point column).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"

namespace kiln::frontend {

enum class InstructionKind {
  kFrom,
  kRun,
  kCmd,
  kLabel,
  kMaintainer,
  kExpose,
  kEnv,
  kAdd,
  kCopy,
  kEntrypoint,
  kVolume,
  kUser,
  kWorkdir,
  kArg,
  kOnbuild,
  kStopsignal,
  kHealthcheck,
  kShell,
};

// Upper-case keyword of an instruction kind, e.g. "COPY".
const char* keyword_of(InstructionKind kind);
// The kind for a keyword in any letter case, or nullopt when it is not an instruction.
std::optional<InstructionKind> instruction_kind_from_keyword(std::string_view keyword);

// A `--name[=value]` flag between the keyword and the arguments. Quotes and backslash escapes in
// the value are already removed (as BuildKit does); variables are not expanded yet.
struct Flag {
  std::string name;                  // without the leading "--"
  std::optional<std::string> value;  // nullopt for a bare `--link`
  SourceLocation where;
};

// A here-document attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
struct Heredoc {
  std::string name;      // the delimiter word, quotes removed
  std::string content;   // the body; every line ends in '\n'; for <<- leading tabs are removed
  bool expand = true;    // false when any part of the delimiter was quoted: no expansion in content
  bool chomp = false;    // <<- form
  unsigned fd = 0;       // leading file descriptor digits, 0 when absent
  SourceLocation where;  // position of the first body line
};

// name=value pair of ENV, LABEL and ARG. For ARG without a default, value is nullopt.
struct KeyValue {
  std::string key;
  std::optional<std::string> value;
  SourceLocation where;
  bool legacy = false;  // ENV/LABEL written `name value` (no `=`)
};

struct Instruction {
  InstructionKind kind = InstructionKind::kFrom;
  std::string keyword;   // as written, e.g. "copy"
  SourceLocation where;  // the keyword
  int end_line = 0;      // last physical line, including continuation lines and heredoc bodies
  std::string text;      // the logical line after joining continuations (for image history)
  // The comment lines right before the instruction, without their `#` and surrounding spaces,
  // since the previous instruction or a bare `#` line (BuildKit's rule): descriptions of stages
  // and ARGs (`# NAME description`) and per-instruction `# check=` settings come from here.
  std::vector<std::string> comments;
  std::vector<Flag> flags;

  // Arguments, by form:
  // - exec (JSON) form of RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK CMD and JSON lists of
  //   COPY/ADD/VOLUME: json_form is true and args holds the decoded strings;
  // - shell form of RUN/CMD/ENTRYPOINT/HEALTHCHECK CMD: args holds one string, the command line;
  // - FROM, EXPOSE, COPY, ADD, VOLUME (non-JSON): whitespace-separated words;
  // - USER, WORKDIR, STOPSIGNAL, MAINTAINER: one string, the rest of the line;
  // - ENV, LABEL, ARG: pairs (args is empty).
  std::vector<std::string> args;
  bool json_form = false;
  SourceLocation args_where;  // first character of the arguments
  std::vector<KeyValue> pairs;
  std::vector<Heredoc> heredocs;

  std::string health_type;  // HEALTHCHECK: "CMD" or "NONE"

  // ONBUILD: the trigger instruction (exactly one element).
  std::vector<Instruction> trigger;

  // The first flag with this name, or nullptr when absent. (The parser rejects repeats of
  // single-valued flags, so for those it is the only one.)
  const Flag* find_flag(std::string_view name) const;
  // Every value of a repeatable flag (--mount, --exclude), in order.
  std::vector<const Flag*> find_flags(std::string_view name) const;
};

struct Directive {
  std::string name;  // lower-case: "syntax", "escape", "check"
  std::string value;
  SourceLocation where;
};

// A non-fatal finding, reported to the user as "FILE:LINE:COL: warning: message". Findings that
// are build checks (checks.hpp) carry the rule's name, and the check settings decide whether they
// are shown.
struct Warning {
  SourceLocation where;
  std::string message;
  std::string rule = {};  // e.g. "NoEmptyContinuation"; empty for other warnings
};

struct Containerfile {
  std::string filename;
  std::string digest;  // "sha256:HEX" of the bytes it was parsed from (provenance records it)
  std::vector<Directive> directives;
  char escape = '\\';
  std::vector<Instruction> instructions;
  std::vector<Warning> warnings;

  // The directive's value, or nullopt when the file has none.
  std::optional<std::string> directive(std::string_view name) const;
};

}  // namespace kiln::frontend
