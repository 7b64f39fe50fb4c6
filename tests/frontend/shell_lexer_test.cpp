#include "kiln/frontend/shell_lexer.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::frontend {
namespace {

using Vars = std::map<std::string, std::string, std::less<>>;

EnvLookup env_of(Vars vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

// Names used throughout: S is set, E is set but empty, U is never set.
const Vars& default_vars() {
  static const Vars vars = {
      {"S", "val"},
      {"E", ""},
      {"P", "/usr/local/bin"},
      {"F", "archive.tar.gz"},
      {"SP", "  a  b "},
      {"K", "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"},  // 한국어
      {"NL", "one\ntwo/x"},
      {"V", "foo"},
  };
  return vars;
}

std::string expand(std::string_view word, ShellLexerOptions options = {},
                   const Vars& vars = default_vars()) {
  return ShellLexer(options).expand_word(word, env_of(vars));
}

std::vector<std::string> words(std::string_view text, ShellLexerOptions options = {},
                               const Vars& vars = default_vars()) {
  return ShellLexer(options).expand_words(text, env_of(vars));
}

// The message of the ExpansionError thrown for word, or "no error".
std::string error_of(std::string_view word, ShellLexerOptions options = {},
                     const Vars& vars = default_vars()) {
  try {
    const std::string value = ShellLexer(options).expand_word(word, env_of(vars));
    return "no error (got \"" + value + "\")";
  } catch (const ExpansionError& e) {
    return e.what();
  }
}

struct Case {
  std::string_view input;
  std::string_view expected;
};

void expect_expansions(const std::vector<Case>& cases, ShellLexerOptions options = {},
                       const Vars& vars = default_vars()) {
  for (const Case& c : cases) {
    EXPECT_EQ(expand(c.input, options, vars), c.expected) << "input: " << c.input;
  }
}

void expect_errors(const std::vector<Case>& cases, ShellLexerOptions options = {},
                   const Vars& vars = default_vars()) {
  for (const Case& c : cases) {
    EXPECT_EQ(error_of(c.input, options, vars), c.expected) << "input: " << c.input;
  }
}

TEST(ShellLexer, PlainVariables) {
  expect_expansions({
      {"", ""},
      {"plain text", "plain text"},
      {"$S", "val"},
      {"${S}", "val"},
      {"a$S.b", "aval.b"},
      {"a${S}b", "avalb"},
      {"$Sb", ""},  // the name is the longest run of name characters
      {"$S_x", ""},
      {"${U}", ""},
      {"x${U}y", "xy"},
      {"$E|$U|", "||"},
      {"$S$S", "valval"},
  });
}

TEST(ShellLexer, PositionalAndSpecialParameters) {
  // Positional parameters are a run of digits; nothing sets them or the special parameters.
  expect_expansions({
      {"he$1x", "hex"},
      {"$999abc", "abc"},
      {"${001}abc", "abc"},
      {"${1:-one}", "one"},
      {"${12:+set}", ""},
      {"$@@@", "@@"},
      {"$$", ""},
      {"${#}", ""},
      {"$?x", "x"},
      {"$0", ""},
      {"${!:-bang}", "bang"},
      {"${*}end", "end"},
  });
  const Vars vars = {{"1", "first"}, {"@", "all"}};
  expect_expansions({{"$1", "first"}, {"$10", ""}, {"${@}", "all"}}, {}, vars);
}

TEST(ShellLexer, DollarWithoutNameStaysLiteral) {
  expect_expansions({
      {"$", "$"},
      {"a$", "a$"},
      {"$.", "$."},
      {"he$.x", "he$.x"},
      {"$ x", "$ x"},
      {"$/", "$/"},
      {"cost: 5$", "cost: 5$"},
      {"$'S'", "$S"},
      {"$\"S\"", "$S"},
  });
}

TEST(ShellLexer, DefaultModifierColon) {
  expect_expansions({
      {"${U:-dflt}", "dflt"},
      {"${E:-dflt}", "dflt"},
      {"${S:-dflt}", "val"},
      {"x${U:-}y", "xy"},
      {"${U:-a b  c}", "a b  c"},
      {"${U:-$S}", "val"},
  });
}

TEST(ShellLexer, DefaultModifierWithoutColon) {
  expect_expansions({
      {"${U-dflt}", "dflt"},
      {"${E-dflt}", ""},
      {"${S-dflt}", "val"},
  });
}

TEST(ShellLexer, AlternativeModifiers) {
  expect_expansions({
      {"${S:+alt}", "alt"},
      {"${E:+alt}", ""},
      {"${U:+alt}", ""},
      {"${S+alt}", "alt"},
      {"${E+alt}", "alt"},
      {"${U+alt}", ""},
      {"${S:+-$S}", "-val"},
  });
}

TEST(ShellLexer, RequiredModifiers) {
  expect_expansions({{"${S?}", "val"}, {"${S:?}", "val"}, {"${E?}", ""}, {"${S:?never}", "val"}});
  expect_errors({
      {"${U?}", "U: is not allowed to be unset"},
      {"${U:?}", "U: is not allowed to be unset"},
      {"${E:?}", "E: is not allowed to be empty"},
      {"${U?custom message}", "U: custom message"},
      {"${E:?set E to $S}", "E: set E to val"},
  });
}

TEST(ShellLexer, NestedExpansions) {
  expect_expansions({
      {"${U:-${S}}", "val"},
      {"${U:-${E:-inner}}", "inner"},
      {"${U:-${U:-${U:-deep}}}", "deep"},
      {"${S:+${U}}", ""},
      {"${S:+[${V}]}", "[foo]"},
      {"${U:-${S}:}", "val:"},
      {"${U:-a}}", "a}"},
      {"${U:-a {b}", "a {b"},
  });
  // The release-name idiom: an optional suffix that only appears when the variable has a value.
  const std::string_view release = "tool-${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tgz";
  EXPECT_EQ(expand(release, {}, {{"OS", "linux"}, {"ARCH", "arm"}, {"VARIANT", "v7"}}),
            "tool-linux-arm-v7.tgz");
  EXPECT_EQ(expand(release, {}, {{"OS", "linux"}, {"ARCH", "arm64"}, {"VARIANT", ""}}),
            "tool-linux-arm64.tgz");
  EXPECT_EQ(expand(release, {}, {{"OS", "linux"}, {"ARCH", "amd64"}}), "tool-linux-amd64.tgz");
}

TEST(ShellLexer, PrefixTrimming) {
  expect_expansions({
      {"${P#*/}", "usr/local/bin"},
      {"${P##*/}", "bin"},
      {"${P#/usr}", "/local/bin"},
      {"${P#nomatch}", "/usr/local/bin"},
      {"${P#}", "/usr/local/bin"},
      {"${P##}", "/usr/local/bin"},
      {"${P#*}", "/usr/local/bin"},  // a lazy star matches nothing
      {"${P##*}", ""},
      {"${P#?}", "usr/local/bin"},
      {"${P#/$U}", "usr/local/bin"},
      {"${U#x}", ""},
  });
  const Vars vars = {{"W", "xxyy"}, {"X", "x"}, {"G", "**a*"}, {"Q", "???y"}};
  expect_expansions(
      {
          {"${W#*x*y}", "y"},
          {"${W##*x}", "yy"},
          {"${W#$X}", "xyy"},
          {"${G#\\*}", "*a*"},
          {"${G##\\**}", ""},
          {"${Q#?\\?}", "?y"},
          {"${W#'*'}", "xxyy"},  // quotes are removed before the pattern is read
      },
      {}, vars);
}

TEST(ShellLexer, SuffixTrimming) {
  expect_expansions({
      {"${F%.*}", "archive.tar"},
      {"${F%%.*}", "archive"},
      {"${F%.gz}", "archive.tar"},
      {"${F%nomatch}", "archive.tar.gz"},
      {"${F%}", "archive.tar.gz"},
      {"${F%%}", "archive.tar.gz"},
      {"${F%?}", "archive.tar.g"},
      {"${F%%*}", ""},
      {"${P%/*}", "/usr/local"},
      {"${P%%/*}", ""},
  });
  const Vars vars = {{"W", "a***yy*"}, {"T", "x\\y"}};
  expect_expansions({{"${W%%\\**\\*}", "a"}, {"${W%\\*}", "a***yy"}, {"${T%\\\\y}", "x"}}, {},
                    vars);
}

TEST(ShellLexer, TrimPatternDialect) {
  // Brackets are literal and wildcards never cross a newline, as with BuildKit's Go regexps.
  const Vars vars = {{"B", "[ab]x"}, {"A", "ax"}, {"NL", "one\ntwo/x"}, {"C", "a.b}c/d"}};
  expect_expansions(
      {
          {"${B#[ab]}", "x"},
          {"${A#[ab]}", "ax"},
          {"${NL##*/}", "one\ntwo/x"},
          {"${NL##*}", "\ntwo/x"},
          {"${NL%%?*}", "one\n"},
          {"${C#a.b\\}}", "c/d"},
          {"${C%\\/d}", "a.b}c"},
      },
      {}, vars);
  expect_errors(
      {
          {"${A#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"},
          // Suffix patterns are reversed before they are read, and the message shows them so.
          {"${A%a\\x}", "invalid pattern (\\xa) in substitution: invalid escape '\\x'"},
          {"${A##\\#}", "invalid pattern (\\#) in substitution: invalid escape '\\#'"},
      },
      {}, vars);
}

TEST(ShellLexer, Replacement) {
  const Vars vars = {
      {"V", "foo"},           {"PATHS", "/tmp/tmp/bar.txt"}, {"N", "/tmp"},
      {"URL", "http://x.io"}, {"GLOBS", "/foo*/*/*.txt"},    {"STAR", "\\*/"},
      {"EMPTY", ""},
  };
  expect_expansions(
      {
          {"${V/o/0}", "f0o"},
          {"${V//o/0}", "f00"},
          {"${V/x/0}", "foo"},
          {"${V/o/}", "fo"},
          {"${V/*/all}", "all"},
          {"${V//?/.}", "..."},
          {"${PATHS/$N/}", "/tmp/bar.txt"},
          {"${PATHS//$N/}", "/bar.txt"},
          {"${URL/http:\\/\\//https:\\/\\/}", "https:\\/\\/x.io"},  // replacements keep escapes
          {"${PATHS//\\//:}", ":tmp:tmp:bar.txt"},
          {"${GLOBS/$STAR/.} ${GLOBS//$STAR/.}", "/foo.*/*.txt /foo..*.txt"},
          {"${V/$EMPTY/x}", "xfoo"},
          {"${V//$EMPTY/-}", "-f-o-o-"},
          {"${V///}", "foo"},
          {"${U/a/b}", ""},
      },
      {}, vars);
  expect_errors(
      {
          {"${V//ww}", "syntax error: missing '/' in ${}"},
          {"${V//}", "syntax error: missing '/' in ${}"},
          {"${V/a/b", "syntax error: missing '}'"},
      },
      {}, vars);
}

TEST(ShellLexer, ReplaceAllExpandsMatchReferences) {
  // ${V//p/r} goes through Go's ReplaceAllString, so `$0` in the replacement is the match and
  // `$$` a dollar; ${V/p/r} splices the replacement in as it is.
  const Vars vars = {{"V", "foo"}, {"R", "[$0]"}, {"D", "$$"}, {"X", "$x|$"}};
  expect_expansions(
      {
          {"${V//o/$R}", "f[o][o]"},
          {"${V/o/$R}", "f[$0]o"},
          {"${V//o/$D}", "f$$"},
          {"${V//o/$X}", "f|$|$"},
          {"${V//o/\\$0}", "f\\o\\o"},
      },
      {}, vars);
}

TEST(ShellLexer, SingleQuotes) {
  expect_expansions({
      {"'$S'", "$S"},
      {"'he${S}'", "he${S}"},
      {"he'll'o", "hello"},
      {"'a\\tb'", "a\\tb"},
      {"'a\\'", "a\\"},
      {"'\"q\"'", "\"q\""},
      {"'  spaced  '", "  spaced  "},
      {"${U:-'a}b'}", "a}b"},
  });
  expect_errors({
      {"he'llo", "unexpected end of statement while looking for matching single-quote"},
      {"'abc", "unexpected end of statement while looking for matching single-quote"},
  });
}

TEST(ShellLexer, DoubleQuotes) {
  expect_expansions({
      {"\"$S\"", "val"},
      {"\"he${S}\"", "heval"},
      {"\"a'$S'b\"", "a'val'b"},
      {"\"''\"", "''"},
      // Only ", $ and the escape character lose their escape inside double quotes.
      {"\"\\$S\"", "$S"},
      {"\"\\\"\"", "\""},
      {"\"a\\\\b\"", "a\\b"},
      {"\"a\\tb\"", "a\\tb"},
      {"\"a\\'b\"", "a\\'b"},
      {"\"a\\\\$S\"", "a\\val"},
      {"\"${U:-\"in\"}\"", "in"},
  });
  expect_errors({
      {"\"abc", "unexpected end of statement while looking for matching double-quote"},
      {"\"abc\\\"", "unexpected end of statement while looking for matching double-quote"},
      {"\"abc\\", "unexpected end of statement while looking for matching double-quote"},
  });
}

TEST(ShellLexer, EscapesOutsideQuotes) {
  expect_expansions({
      {"abc\\tdef", "abctdef"},
      {"he\\'llo", "he'llo"},
      {"\\$S", "$S"},
      {"\\${S}", "${S}"},
      {"\\${}", "${}"},
      {"a\\\\$S", "a\\val"},
      {"hello\\", "hello"},  // a lone escape at the very end is dropped
      {"hello\\\\", "hello\\"},
      {"a\\ b", "a b"},
      {"${U:-\\$S:}", "$S:"},
      {"${U:-\\${S}z}", "${Sz}"},
  });
  EXPECT_EQ(error_of("he\\\\'llo"),
            "unexpected end of statement while looking for matching single-quote");
}

TEST(ShellLexer, BacktickEscapeCharacter) {
  const ShellLexerOptions backtick{.escape = '`'};
  expect_expansions(
      {
          {"C:\\path\\$S", "C:\\path\\val"},
          {"`$S", "$S"},
          {"a``b", "a`b"},
          {"a`", "a"},
          {"\"`\"q`\"\"", "\"q\""},
          {"\"\\$S\"", "\\val"},
          {"\"a``b\"", "a`b"},
      },
      backtick);
  // The pattern escape stays a backslash whatever the lexer's escape character is.
  const Vars vars = {{"G", "**x"}};
  expect_expansions({{"${G#\\*}", "*x"}, {"${G##`*}", "**x"}}, backtick, vars);
}

TEST(ShellLexer, SyntaxErrors) {
  expect_errors({
      {"${}", "syntax error: bad substitution"},
      {"he${}xx", "syntax error: bad substitution"},
      {"${:x}", "syntax error: bad substitution"},
      {"${:-x}", "syntax error: bad substitution"},
      {"${{S}", "syntax error: bad substitution"},
      {"${", "syntax error: missing '}'"},
      {"${S", "syntax error: missing '}'"},
      {"${S:", "syntax error: missing '}'"},
      {"${S:-x", "syntax error: missing '}'"},
      {"${U:-x ${S}", "syntax error: missing '}'"},
      {"${U:-'x}", "syntax error: missing '}'"},
      {"${S=x}", "unsupported modifier (=) in substitution"},
      {"${S:=x}", "unsupported modifier (:=) in substitution"},
      {"${S:x}", "unsupported modifier (:x) in substitution"},
      {"${.}", "unsupported modifier (.) in substitution"},
      {"${S:#x}", "unsupported modifier (:#) in substitution"},
      {"${S:%%x}", "unsupported modifier (:%) in substitution"},
      {"${1x}", "unsupported modifier (x) in substitution"},
      {"${S\xC3\xA9}", "unsupported modifier (\xC3\xA9) in substitution"},
      {"${U:-${.}}", "unsupported modifier (.) in substitution"},
  });
  // The word after an unknown modifier is read before the modifier is rejected.
  EXPECT_EQ(error_of("${S:x"), "syntax error: missing '}'");
  EXPECT_EQ(error_of("${S:}}"), "unsupported modifier (:}) in substitution");
}

TEST(ShellLexer, RawQuotesKeepQuotes) {
  const ShellLexerOptions raw{.raw_quotes = true};
  expect_expansions(
      {
          {"\"a\"'b'", "\"a\"'b'"},
          {"\"$S\"", "\"val\""},
          {"'$S'", "'$S'"},
          {"\"\\\"\"", "\"\"\""},
          {"x\\\"y", "x\"y"},
      },
      raw);
}

TEST(ShellLexer, RawEscapesKeepEscapes) {
  const ShellLexerOptions raw{.raw_escapes = true};
  expect_expansions(
      {
          {"a\\ b", "a\\ b"},
          {"\\$S", "\\$S"},
          {"a\\", "a\\"},
          {"\"\\$S\"", "\\$S"},
          // BuildKit writes the escape twice when it cannot escape the next character.
          {"\"a\\tb\"", "a\\\\tb"},
          // Words of -, + and ? always have their escapes processed.
          {"${U:-a\\ b}", "a b"},
      },
      raw);
}

TEST(ShellLexer, HeredocDetectionMode) {
  // The options BuildKit's parser uses to find heredoc words on an instruction line.
  const ShellLexerOptions heredoc{.raw_quotes = true, .raw_escapes = true, .skip_unset = true};
  EXPECT_EQ(words("cat <<\"EOF\" > $OUT", heredoc, {}),
            (std::vector<std::string>{"cat", "<<\"EOF\"", ">", "$OUT"}));
  EXPECT_EQ(words("<<'EOF' <<-E\\OF", heredoc, {}),
            (std::vector<std::string>{"<<'EOF'", "<<-E\\OF"}));
  EXPECT_EQ(words("cat << EOF", heredoc, {}), (std::vector<std::string>{"cat", "<< EOF"}));
  EXPECT_EQ(words("cat <<\t\"EOF\"", heredoc, {}),
            (std::vector<std::string>{"cat", "<<\t\"EOF\""}));
  EXPECT_EQ(words("a < b", heredoc, {}), (std::vector<std::string>{"a", "<", "b"}));
  // Without raw quotes the quoted and unquoted forms give the same word, which is how a quoted
  // heredoc delimiter (no expansion in the body) is told apart.
  EXPECT_EQ(words("<<\"EOF\"", {.skip_unset = true}, {}), (std::vector<std::string>{"<<EOF"}));
}

TEST(ShellLexer, SkipUnsetLeavesReferences) {
  const ShellLexerOptions skip{.skip_unset = true};
  expect_expansions(
      {
          {"$U", "$U"},
          {"${U}", "${U}"},
          {"$S-$U", "val-$U"},
          {"${U:-x}", "${U:-x}"},
          {"${U:-$S}", "${U:-val}"},
          {"${U?msg}", "${U?msg}"},
          {"${U:x}", "${U:x}"},
          {"${U#*/}", "${U#*/}"},
          {"${U/a/b}", "${U/a/b}"},
          {"${U//a/b}", "${U/a/b}"},  // BuildKit drops the second slash
          {"${E:-x}", "x"},
          {"$1", "$1"},
      },
      skip);
  EXPECT_EQ(error_of("${U:#x}", skip), "unsupported modifier (:#) in substitution");
}

TEST(ShellLexer, SkipQuotesTreatsQuotesAsText) {
  const ShellLexerOptions skip{.skip_quotes = true};
  expect_expansions({{"'$S'", "'val'"}, {"\"a b\"", "\"a b\""}, {"\\'", "'"}}, skip);
  EXPECT_EQ(words("'a b'", skip), (std::vector<std::string>{"'a", "b'"}));
}

TEST(ShellLexer, ReportsMatchedAndUnmatchedNames) {
  const ShellLexer lexer;
  const EnvLookup env = env_of({{"FOO", "xxx"}, {"BAR", ""}});

  ExpandResult result = lexer.expand_word_with_matches("${FOO-a} ${BAR-b} ${BAZ-c}", env);
  EXPECT_EQ(result.value, "xxx  c");
  EXPECT_EQ(result.matched, (std::set<std::string>{"BAR", "FOO"}));
  EXPECT_EQ(result.unmatched, (std::set<std::string>{"BAZ"}));

  result = lexer.expand_word_with_matches("x", env);
  EXPECT_TRUE(result.matched.empty());
  EXPECT_TRUE(result.unmatched.empty());

  // Names inside words and patterns count, even when the outer value wins.
  result = lexer.expand_word_with_matches("${FOO:-$NOPE}${FOO#$BAR}'$QUOTED'", env);
  EXPECT_EQ(result.value, "xxxxxx$QUOTED");
  EXPECT_EQ(result.matched, (std::set<std::string>{"BAR", "FOO"}));
  EXPECT_EQ(result.unmatched, (std::set<std::string>{"NOPE"}));

  EXPECT_EQ(lexer.expand_word_with_matches("$1$@", env).unmatched,
            (std::set<std::string>{"1", "@"}));
}

TEST(ShellLexer, ExpandWordsSplitsOnUnquotedWhitespace) {
  using W = std::vector<std::string>;
  EXPECT_EQ(words(""), W{});
  EXPECT_EQ(words("   \t\n "), W{});
  EXPECT_EQ(words("hello"), W{"hello"});
  EXPECT_EQ(words("  hello \t there  "), (W{"hello", "there"}));
  EXPECT_EQ(words("hello\\ there"), W{"hello there"});
  EXPECT_EQ(words("hello\\\" there"), (W{"hello\"", "there"}));
  EXPECT_EQ(words("hello\" there  \""), W{"hello there  "});
  EXPECT_EQ(words("a'$S b'c"), W{"a$S bc"});
  // Whitespace that an unquoted expansion produces splits too, and is trimmed at the edges.
  EXPECT_EQ(words("x${SP}y"), (W{"x", "a", "b", "y"}));
  EXPECT_EQ(words("x\"${SP}\"y"), W{"x  a  b y"});
  EXPECT_EQ(words("${SP}"), (W{"a", "b"}));
  // BuildKit's ProcessWords would lose "pre" here (see the header); kiln keeps it.
  EXPECT_EQ(words("pre${U:-a b}post"), (W{"prea", "bpost"}));
  // An empty quoted string starts a word but never produces one.
  EXPECT_EQ(words("a \"\" b ''"), (W{"a", "b"}));
  EXPECT_EQ(words("\"\""), W{});
  EXPECT_EQ(words("$E"), W{});
  EXPECT_THROW(words("hello\" there"), ExpansionError);
}

TEST(ShellLexer, Utf8PassesThrough) {
  const std::string korean = "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4";  // 한국어
  const std::string han = "\xED\x95\x9C";                             // 한
  expect_expansions({
      {korean, korean},
      {"'" + han + "'" + korean, han + korean},
      {"\"" + han + "\\t\"", han + "\\t"},
      {han + "$K", han + korean},
      {"$K" + han, korean + han},  // names are ASCII, so the name ends before 한
      {"${K#?}", korean.substr(3)},
      {"${K%?}", korean.substr(0, 6)},
      {"${K/" + han + "/x}", "x" + korean.substr(3)},
      {"caf\xC3\xA9", "caf\xC3\xA9"},
  });
  // A stray byte is an ordinary character, and `?` consumes it alone.
  const Vars vars = {{"B", "\xFF\xC3\xA9"}};
  expect_expansions({{"${B#?}", "\xC3\xA9"}, {"${B%?}", "\xFF"}, {"a\x80$B", "a\x80\xFF\xC3\xA9"}},
                    {}, vars);
  // A leading byte order mark is dropped, as Go's text/scanner does.
  EXPECT_EQ(expand("\xEF\xBB\xBF$S"), "val");
}

TEST(ShellLexer, EmptyLookupMeansNothingIsSet) {
  const ShellLexer lexer;
  EXPECT_EQ(lexer.expand_word("a${X:-b}$Y", EnvLookup{}), "ab");
  EXPECT_EQ(lexer.expand_word_with_matches("$X", EnvLookup{}).unmatched,
            (std::set<std::string>{"X"}));
}

TEST(ShellPatternMatch, WildcardsAndEscapes) {
  struct PatternCase {
    std::string_view pattern;
    std::string_view text;
    bool matches;
  };
  const std::vector<PatternCase> cases = {
      {"", "", true},
      {"", "a", false},
      {"*", "", true},
      {"*", "any/thing\nat all", true},
      {"a*c", "abbbc", true},
      {"a*c", "abbbd", false},
      {"*.tar.gz", "x.tar.gz", true},
      {"?", "a", true},
      {"?", "", false},
      {"??", "a", false},
      {"?", "\xED\x95\x9C", true},  // one UTF-8 character
      {"\\*", "*", true},
      {"\\*", "a", false},
      {"a\\?c", "a?c", true},
      {"a\\?c", "abc", false},
      {"a\\", "a\\", true},
      {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
  };
  for (const PatternCase& c : cases) {
    EXPECT_EQ(shell_pattern_match(c.pattern, c.text), c.matches)
        << "pattern: " << c.pattern << " text: " << c.text;
  }
}

TEST(ShellPatternMatch, BracketExpressions) {
  struct PatternCase {
    std::string_view pattern;
    std::string_view text;
    bool matches;
  };
  const std::vector<PatternCase> cases = {
      {"[abc]", "b", true},
      {"[abc]", "d", false},
      {"[a-c]x", "bx", true},
      {"[a-c]x", "dx", false},
      // Go's filepath.Match, as BuildKit's COPY: `!` is a member, only `^` negates.
      {"[!a-c]", "d", false},
      {"[!a-c]", "a", true},
      {"[!a-c]", "!", true},
      {"[^a-c]", "d", true},
      {"[^a]", "b", true},
      {"[^a]", "a", false},
      {"[]a]", "]", true},
      {"[^]]", "]", false},
      {"[a-]", "-", true},
      {"[\\]]", "]", true},
      {"[*?]", "?", true},
      {"[*?]", "x", false},
      {"[a", "[a", true},                                     // unclosed: literal
      {"[\xEA\xB0\x80-\xED\x9E\xA3]", "\xED\x95\x9C", true},  // [가-힣] against 한
      {"[^\xEA\xB0\x80-\xED\x9E\xA3]", "\xED\x95\x9C", false},
  };
  for (const PatternCase& c : cases) {
    EXPECT_EQ(shell_pattern_match(c.pattern, c.text), c.matches)
        << "pattern: " << c.pattern << " text: " << c.text;
  }
}

// Hostile words end in a clear error, not a crash or an exhausted memory.
TEST(ShellLexer, NestingIsBounded) {
  std::string ok, deep;
  for (int i = 0; i < 100; ++i)
    ok += "${a:-";
  ok += "x" + std::string(100, '}');
  EXPECT_EQ(expand(ok), "x");
  for (int i = 0; i < 10000; ++i)
    deep += "${a:-";
  deep += "x" + std::string(10000, '}');
  EXPECT_NE(error_of(deep).find("nested more than 100 levels deep"), std::string::npos);
}

TEST(ShellLexer, GrowthIsBounded) {
  Vars vars = {{"BIG", std::string(600 * 1024, 'x')}};
  EXPECT_EQ(expand("$BIG", {}, vars).size(), 600u * 1024);
  EXPECT_NE(error_of("$BIG$BIG", {}, vars).find("expands to more than 1 MiB"), std::string::npos);
  EXPECT_NE(error_of("\"$BIG$BIG\"", {}, vars).find("expands to more than 1 MiB"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::frontend
