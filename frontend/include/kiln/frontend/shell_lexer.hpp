#pragma once

// Variable expansion and word splitting for Containerfile instructions.
//
// The rules follow BuildKit's dockerfile shell lexer (frontend/dockerfile/shell/lex.go), which is
// a deliberately small subset of POSIX sh: there is no command substitution, no arithmetic, no
// field splitting other than ShellLexer::expand_words, and only the parameter expansions listed
// below. Where BuildKit's behaviour differs from a real shell (for example `\t` outside quotes is
// `t`, a lone escape at the end of the input is dropped, `"\x"` keeps the backslash, and `""` adds
// no word) kiln follows BuildKit, because images must build the same way under both.
//
// Input is treated as bytes: every byte >= 0x80 is an ordinary character, so UTF-8 text passes
// through unchanged, and the `?` wildcard consumes one whole UTF-8 sequence (or one stray byte).
// Variable names are ASCII letters, digits and `_`.
//
// Supported forms (NAME is a name, a run of digits, or one of `@ * # ? - $ ! 0`):
//   $NAME  ${NAME}            value, or "" when unset
//   ${NAME:-word} ${NAME-word}  word when unset (`:` also when empty), else the value
//   ${NAME:+word} ${NAME+word}  word when set (`:` also requires non-empty), else ""
//   ${NAME:?msg}  ${NAME?msg}   value, or throws "NAME: msg" when unset (`:` also when empty)
//   ${NAME#pat}   ${NAME##pat}  value without its shortest / longest prefix matching pat
//   ${NAME%pat}   ${NAME%%pat}  value without its shortest / longest suffix matching pat
//   ${NAME/pat/repl} ${NAME//pat/repl}  first / every match of pat (longest at the leftmost
//                                        place) replaced by repl
// `word`, `msg`, `pat` and `repl` are themselves expanded, so `${A:-${B}}` nests. In `pat` and
// `repl` the escape characters are kept, because they are pattern syntax there: `\*`, `\?`, `\\`
// are literal characters and `\}`, `\/` a literal `}` or `/`; any other `\x` is an error.
// Patterns in these forms use BuildKit's dialect: `*` and `?` only (a `[` is literal), and neither
// wildcard matches a newline.
//
// Known, deliberate differences from BuildKit (as of moby/buildkit 73ed6825c):
//   * `${NAME` cut off right after the name reports "syntax error: missing '}'"; BuildKit reports
//     "unsupported modifier (\uFFFD) in substitution".
//   * expand_words keeps the text before a `${NAME:-...}` style expansion in the same word
//     (`a${X:-b}c` gives "abc"); BuildKit's ProcessWords drops it ("bc") because a word buffer is
//     shared between nested calls.
//   * Non-ASCII letters are not name characters and non-ASCII spaces do not split words, and
//     invalid UTF-8 is passed through rather than replaced by U+FFFD.

#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::frontend {

// Returns the value of a variable, or std::nullopt when it is unset. An empty std::function is
// accepted and means that nothing is set.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Thrown for malformed expansions; what() is the message alone, without position, e.g.
// "syntax error: missing '}'", "syntax error: bad substitution", "unsupported modifier (:#) in
// substitution", "NAME: is not allowed to be unset", "NAME: custom message".
class ExpansionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ShellLexerOptions {
  char escape = '\\';        // '\\' or '`' (the Containerfile's escape directive)
  bool raw_quotes = false;   // keep quote characters in the output (BuildKit RawQuotes)
  bool raw_escapes = false;  // keep escape characters in the output (BuildKit RawEscapes)
  bool skip_unset = false;   // leave unset references as written (BuildKit SkipUnsetEnv)
  bool skip_quotes = false;  // treat ' and " as ordinary characters (BuildKit SkipProcessQuotes)
};

struct ExpandResult {
  std::string value;
  std::set<std::string> matched;    // names of variables that were referenced and set
  std::set<std::string> unmatched;  // names referenced but unset
};

// Stateless apart from its options; const methods may be called concurrently.
//
// Option details that callers rely on:
//   * raw_escapes keeps escape characters outside `${...}` words. Inside double quotes it doubles
//     the escape before a character that cannot be escaped there (`"\t"` gives `"\\t"`), and the
//     words of `${V-word}`, `${V+word}` and `${V?word}` have their escapes removed regardless.
//   * skip_unset rewrites an unset reference from its expanded parts: `$V` and `${V}` stay as
//     written, `${V:-a$B}` keeps `a` plus B's expansion, and `${V//p/r}` comes back as `${V/p/r}`
//     (BuildKit writes a single slash). For an unset variable `${V?msg}` and unknown modifiers
//     such as `${V:x}` do not throw in this mode (`${V:#p}` and `${V:%p}` still do).
//   * raw_quotes together with raw_escapes and skip_unset is what the Containerfile parser uses to
//     find heredoc words such as `<<"EOF"`. A `<<` followed by spaces or tabs stays in one word
//     with what follows it (`<< EOF` is one word) so that such heredocs are found too.
class ShellLexer {
 public:
  explicit ShellLexer(ShellLexerOptions options = {});

  // Expands one word: quotes removed, escapes applied, $VAR/${VAR...} substituted. Whitespace is
  // kept. A leading UTF-8 byte order mark is dropped. Throws ExpansionError.
  std::string expand_word(std::string_view word, const EnvLookup& env) const;

  // As expand_word, and also reports which variables were looked up. A name is recorded even when
  // its value ends up unused (e.g. `${A:+x}`), and nothing is reported when an error is thrown.
  ExpandResult expand_word_with_matches(std::string_view word, const EnvLookup& env) const;

  // Expands and splits into words on unquoted whitespace; whitespace produced by an unquoted
  // expansion also splits (BuildKit ProcessWords). Empty input gives no words, and so does a word
  // that is only an empty quoted string (`""`). Throws ExpansionError.
  std::vector<std::string> expand_words(std::string_view text, const EnvLookup& env) const;

  const ShellLexerOptions& options() const { return options_; }

 private:
  ShellLexerOptions options_;
};

// Matches a COPY/ADD wildcard (Go's filepath.Match, as BuildKit) against the whole of text: `*`
// (any run, including `/` and newlines), `?` (one UTF-8 character), `[...]` with ranges and `^`
// negation (`!` is an ordinary member, as in Go; a `]` right after the opening bracket or
// negation is a member; an unclosed `[` is literal), and backslash escapes (a trailing backslash
// is literal). Classes such as `[:alpha:]` are not supported.
//
// ${V#p} and friends share this matcher's engine but not its dialect: BuildKit's patterns have no
// bracket expressions and their wildcards stop at newlines, so those forms do not call this.
bool shell_pattern_match(std::string_view pattern, std::string_view text);

}  // namespace kiln::frontend
