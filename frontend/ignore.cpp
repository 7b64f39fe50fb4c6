// Ignore-file parsing and matching with the semantics of moby/patternmatcher.
//
// moby compiles each pattern to a Go regular expression. We compile it instead to a small list of
// tokens run as a Thompson NFA (a set of live positions advanced one character at a time): linear
// in path length times pattern length, no recursion, no backtracking blow-up, and the same run
// answers both "does the path match" and "does one of its parent directories match" because the
// parents are exactly the prefixes that end right before a '/'.
//
// We also follow moby where its regexp translation leaks through: outside a class '^' is copied
// into the regexp unescaped, so in a wildcard pattern it asserts "start of path" (a leading '^' is
// a no-op, "a*^b" matches nothing, "**^a" matches "a") while in moby's literal, prefix and suffix
// fast paths it is an ordinary character; and the ".*" that "**" becomes does not match '\n'.
//
// We part from moby in three corners where its behaviour is an accident of the translation and
// contradicts the filepath.Match syntax it validates patterns with: '\' before a letter, digit or
// non-ASCII character escapes it to itself (in moby's regexp "\d" is a digit class, "\a" a bell,
// and "\q" or "\é" make every match that reaches the pattern fail); '*' and '?' inside "[...]" are
// members (moby garbles the class); a reversed range such as "[z-a]" is rejected when parsing
// (moby accepts it and then fails every match that reaches the pattern).

#include "kiln/frontend/ignore.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::frontend {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// UTF-8

// Go decodes each byte that is not valid UTF-8 as U+FFFD, one byte wide; so do we, so that '?'
// and '*' step over such bytes as Go's regexp does.
constexpr char32_t kReplacement = 0xFFFD;

struct Rune {
  char32_t value;
  std::size_t size;
};

Rune decode(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80)
    return {b0, 1};
  std::size_t trail = 0;
  std::uint32_t cp = 0;
  std::uint32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    trail = 1;
    cp = b0 & 0x1Fu;
    min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    trail = 2;
    cp = b0 & 0x0Fu;
    min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    trail = 3;
    cp = b0 & 0x07u;
    min = 0x10000;
  } else {
    return {kReplacement, 1};
  }
  if (s.size() - i <= trail)
    return {kReplacement, 1};
  for (std::size_t k = 1; k <= trail; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0u) != 0x80u)
      return {kReplacement, 1};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  // Overlong forms and UTF-16 surrogates are not characters; Go decodes them as errors too.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return {kReplacement, 1};
  return {static_cast<char32_t>(cp), trail + 1};
}

// Go's unicode.IsSpace, which strings.TrimSpace (used by moby on every line) goes by.
bool is_go_space(char32_t c) {
  switch (c) {
    case U'\t':
    case U'\n':
    case U'\v':
    case U'\f':
    case U'\r':
    case U' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

struct Trimmed {
  std::string_view text;
  std::size_t leading_runes;  // characters removed in front, for error columns
};

Trimmed trim_go_space(std::string_view s) {
  std::size_t begin = s.size();
  std::size_t end = s.size();
  std::size_t leading = 0;
  for (std::size_t i = 0; i < s.size();) {
    const Rune r = decode(s, i);
    if (!is_go_space(r.value)) {
      if (begin == s.size())
        begin = i;
      end = i + r.size;
    } else if (begin == s.size()) {
      ++leading;
    }
    i += r.size;
  }
  return {s.substr(begin, end - begin), leading};
}

// ---------------------------------------------------------------------------------------------
// Pattern programs

enum class Op : std::uint8_t {
  kChar,      // one character equal to `ch`
  kAnyChar,   // '?': one character other than '/'
  kClass,     // "[...]": one character in (negated: not in) ranges[first, first + count)
  kStar,      // '*': any run of characters other than '/'
  kAnything,  // "**" at the end: any run of characters other than '\n' (the regexp's ".*")
  kSkip,      // start of a mid-pattern "**", i.e. "(.*/)?": may jump over the next `first` tokens
  kAnchor,    // '^' in a wildcard pattern: the empty string at the start of the path
};

struct Token {
  Op op = Op::kChar;
  bool negated = false;
  char32_t ch = 0;
  std::uint32_t first = 0;
  std::uint32_t count = 0;
};

struct Range {
  char32_t lo;
  char32_t hi;
};

// moby's four match types, chosen from the pattern text alone.
enum class Shape : std::uint8_t {
  kLiteral,  // no wildcard: equality with the path or a parent (exactMatch)
  kPrefix,   // no wildcard, then "**" at the end: the path starts with `text` (prefixMatch)
  kSuffix,   // "**", then no wildcard: the path or a parent ends with `text` (suffixMatch)
  kGlob,     // anything else: run the tokens (regexpMatch)
};

struct Program {
  Shape shape = Shape::kGlob;
  // kLiteral: the whole pattern; kPrefix: what precedes the final "**"; kSuffix: what follows
  // the leading "**".
  std::string text;
  std::vector<Token> tokens;
  std::vector<Range> ranges;
};

struct SyntaxError {
  std::string reason;
};

constexpr std::string_view kUnterminated = "'[' has no matching ']'";

// What moby counts as a wildcard when it picks a match type: a lone ']' or a '\' sends it down
// its regexp path too, though they match literally there.
constexpr std::string_view kWildcards = "*?[]\\";

Shape shape_of(std::string_view text) {
  if (text.find_first_of(kWildcards) == std::string_view::npos)
    return Shape::kLiteral;
  if (starts_with(text, "**")) {
    const bool plain_rest = text.find_first_of(kWildcards, 2) == std::string_view::npos;
    return plain_rest ? Shape::kSuffix : Shape::kGlob;
  }
  if (ends_with(text, "**") && text.find_first_of(kWildcards) == text.size() - 2) {
    return Shape::kPrefix;
  }
  return Shape::kGlob;
}

// One member of a "[...]" class, by filepath.Match's rules (its getEsc): '-' and ']' must be
// escaped where a member is expected, '\' escapes, and the class must go on after the member.
char32_t class_member(std::string_view text, std::size_t& i) {
  if (i >= text.size())
    throw SyntaxError{std::string(kUnterminated)};
  if (text[i] == ']')
    throw SyntaxError{"empty character class, or ']' not escaped with '\\'"};
  if (text[i] == '-')
    throw SyntaxError{"'-' not escaped with '\\' in a character class"};
  if (text[i] == '\\') {
    ++i;
    if (i >= text.size())
      throw SyntaxError{std::string(kUnterminated)};
  }
  const Rune r = decode(text, i);
  if (r.value == kReplacement && r.size == 1) {
    throw SyntaxError{"invalid UTF-8 in a character class"};
  }
  i += r.size;
  if (i >= text.size())
    throw SyntaxError{std::string(kUnterminated)};
  return r.value;
}

// Compiles the class that starts after the '[' at text[i - 1]; returns the index after its ']'.
std::size_t compile_class(std::string_view text, std::size_t i, Program& program) {
  Token token;
  token.op = Op::kClass;
  token.first = static_cast<std::uint32_t>(program.ranges.size());
  if (i < text.size() && text[i] == '^') {
    token.negated = true;
    ++i;
  }
  for (;;) {
    if (i < text.size() && text[i] == ']' && token.count > 0) {
      ++i;
      break;
    }
    const char32_t lo = class_member(text, i);
    char32_t hi = lo;
    if (text[i] == '-') {  // class_member left i < size
      ++i;
      hi = class_member(text, i);
    }
    if (hi < lo)
      throw SyntaxError{"character class range is reversed"};
    program.ranges.push_back({lo, hi});
    ++token.count;
  }
  program.tokens.push_back(token);
  return i;
}

Program compile(std::string_view text) {
  Program program;
  program.shape = shape_of(text);
  auto push = [&program](Op op, char32_t ch = 0, std::uint32_t first = 0) {
    Token token;
    token.op = op;
    token.ch = ch;
    token.first = first;
    program.tokens.push_back(token);
  };
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n;) {
    const char c = text[i];
    if (c == '*' && i + 1 < n && text[i + 1] == '*') {
      i += 2;
      if (i < n && text[i] == '/')
        ++i;  // "**/" is one unit, as in moby
      if (i == n) {
        push(Op::kAnything);
      } else {
        push(Op::kSkip, 0, 2);
        push(Op::kAnything);
        push(Op::kChar, U'/');
      }
    } else if (c == '*') {
      push(Op::kStar);
      ++i;
    } else if (c == '?') {
      push(Op::kAnyChar);
      ++i;
    } else if (c == '^' && program.shape == Shape::kGlob) {
      push(Op::kAnchor);
      ++i;
    } else if (c == '[') {
      i = compile_class(text, i + 1, program);
    } else if (c == '\\') {
      if (i + 1 == n)
        throw SyntaxError{"'\\' at the end escapes nothing"};
      const Rune r = decode(text, i + 1);
      push(Op::kChar, r.value);
      i += 1 + r.size;
    } else {
      const Rune r = decode(text, i);
      push(Op::kChar, r.value);
      i += r.size;
    }
  }
  // moby's fast paths are not only faster: they match differently from its regexps ("**foo"
  // matches "barfoo" where "(.*/)?foo" would not; '^' is literal there), so they are kept apart.
  switch (program.shape) {
    case Shape::kLiteral:
      program.text = text;
      break;
    case Shape::kPrefix:
      program.text = text.substr(0, n - 2);
      break;
    case Shape::kSuffix:
      program.text = text.substr(2);
      break;
    case Shape::kGlob:
      break;
  }
  return program;
}

// Two NFA state sets of `states` bytes each; on the stack for every pattern of sane length.
class StateSets {
 public:
  explicit StateSets(std::size_t states) : states_(states) {
    if (2 * states <= inline_.size()) {
      data_ = inline_.data();
    } else {
      heap_ = std::make_unique<std::uint8_t[]>(2 * states);
      data_ = heap_.get();
    }
  }
  std::uint8_t* first() { return data_; }
  std::uint8_t* second() { return data_ + states_; }

 private:
  std::size_t states_;
  std::array<std::uint8_t, 256> inline_{};
  std::unique_ptr<std::uint8_t[]> heap_;
  std::uint8_t* data_;
};

// Adds the states reachable without consuming a character; `at_start` says nothing has been
// consumed yet. Jumps only go forward, so one ascending pass reaches all of them.
void close(const Program& program, std::uint8_t* set, bool at_start) {
  const std::size_t m = program.tokens.size();
  for (std::size_t k = 0; k < m; ++k) {
    if (!set[k])
      continue;
    const Token& token = program.tokens[k];
    if (token.op == Op::kStar || token.op == Op::kAnything) {
      set[k + 1] = 1;
    } else if (token.op == Op::kSkip) {
      set[k + 1] = 1;
      set[k + 1 + token.first] = 1;
    } else if (token.op == Op::kAnchor && at_start) {
      set[k + 1] = 1;
    }
  }
}

void start(const Program& program, std::uint8_t* set) {
  std::fill(set, set + program.tokens.size() + 1, std::uint8_t{0});
  set[0] = 1;
  close(program, set, true);
}

bool in_class(const Program& program, const Token& token, char32_t c) {
  bool hit = false;
  for (std::uint32_t r = token.first; r < token.first + token.count && !hit; ++r) {
    hit = program.ranges[r].lo <= c && c <= program.ranges[r].hi;
  }
  return hit != token.negated;
}

// Consumes c, moving from the states in `from` to those in `to`. False when none survive.
bool step(const Program& program, const std::uint8_t* from, std::uint8_t* to, char32_t c) {
  const std::size_t m = program.tokens.size();
  std::fill(to, to + m + 1, std::uint8_t{0});
  bool alive = false;
  for (std::size_t k = 0; k < m; ++k) {
    if (!from[k])
      continue;
    const Token& token = program.tokens[k];
    bool consumed = false;
    std::size_t target = k + 1;
    switch (token.op) {
      case Op::kChar:
        consumed = c == token.ch;
        break;
      case Op::kAnyChar:
        consumed = c != U'/';
        break;
      case Op::kClass:
        consumed = in_class(program, token, c);
        break;
      case Op::kStar:
        consumed = c != U'/';
        target = k;
        break;
      case Op::kAnything:
        consumed = c != U'\n';
        target = k;
        break;
      case Op::kSkip:
      case Op::kAnchor:
        break;
    }
    if (consumed) {
      to[target] = 1;
      alive = true;
    }
  }
  if (alive)
    close(program, to, false);
  return alive;
}

// A program's tokens run as an NFA over a text read from the start of the path: the live states,
// advanced one character at a time.
class NfaRun {
 public:
  explicit NfaRun(const Program& program)
      : program_(program),
        sets_(program.tokens.size() + 1),
        cur_(sets_.first()),
        next_(sets_.second()) {
    start(program_, cur_);
  }
  NfaRun(const NfaRun&) = delete;
  NfaRun& operator=(const NfaRun&) = delete;

  // Consumes the characters of `text`. False as soon as no state survives; the run is then over.
  bool consume(std::string_view text) {
    for (std::size_t i = 0; i < text.size();) {
      const Rune r = decode(text, i);
      if (!step(program_, cur_, next_, r.value))
        return false;
      std::swap(cur_, next_);
      i += r.size;
    }
    return true;
  }

  // Whether the pattern matches all that has been consumed.
  bool matched() const { return cur_[program_.tokens.size()] != 0; }

  // Whether the pattern may match a longer text. Every token but an anchor can consume a
  // character, so a live position short of the end can be completed (unless only an anchor, dead
  // past the start, lies ahead: rare enough to answer conservatively).
  bool may_go_on() const {
    return std::any_of(cur_, cur_ + program_.tokens.size(),
                       [](std::uint8_t live) { return live != 0; });
  }

 private:
  const Program& program_;
  StateSets sets_;
  std::uint8_t* cur_;
  std::uint8_t* next_;
};

// moby's MatchesOrParentMatches for one pattern: the path itself or one of its parent
// directories ("a", "a/b" for "a/b/c") matches. `path` is clean and relative.
bool matches_self_or_parent(const Program& program, std::string_view path) {
  switch (program.shape) {
    case Shape::kLiteral: {
      const std::string& lit = program.text;
      return path == lit ||
             (path.size() > lit.size() && starts_with(path, lit) && path[lit.size()] == '/');
    }
    case Shape::kPrefix:
      return starts_with(path, program.text);  // a parent with the prefix implies the path has it
    case Shape::kSuffix: {
      const std::string_view suffix = program.text;
      auto test = [suffix](std::string_view s) {
        // "**/foo" also matches "foo" at the top, where no '/' precedes it.
        return ends_with(s, suffix) ||
               (!suffix.empty() && suffix[0] == '/' && s == suffix.substr(1));
      };
      if (test(path))
        return true;
      for (std::size_t j = path.find('/'); j != std::string_view::npos; j = path.find('/', j + 1)) {
        if (test(path.substr(0, j)))
          return true;
      }
      return false;
    }
    case Shape::kGlob:
      break;
  }
  // What precedes each '/' is a parent directory of the path. No multi-byte character holds a
  // '/' byte, so reading the path piece by piece decodes it as reading it whole does.
  NfaRun run(program);
  std::size_t begin = 0;
  for (std::size_t slash = path.find('/'); slash != std::string_view::npos;
       slash = path.find('/', slash + 1)) {
    if (!run.consume(path.substr(begin, slash - begin)))
      return false;
    if (run.matched())
      return true;
    begin = slash;  // the '/' is read with the next piece
  }
  return run.consume(path.substr(begin)) && run.matched();
}

// Whether the pattern matches some path that starts with `prefix` ("dir/", or "" for the root)
// and goes on past it.
bool matches_below(const Program& program, std::string_view prefix) {
  switch (program.shape) {
    case Shape::kLiteral:
      return program.text.size() > prefix.size() && starts_with(program.text, prefix);
    case Shape::kPrefix:
      return starts_with(program.text, prefix) || starts_with(prefix, program.text);
    case Shape::kSuffix:
      return true;  // "dir/" + the suffix (without its '/') ends with the suffix
    case Shape::kGlob:
      break;
  }
  NfaRun run(program);
  return run.consume(prefix) && run.may_go_on();
}

// A relpath as callers usually pass it needs no cleaning; checking is cheaper than cleaning.
bool is_clean_relative(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.back() == '/')
    return false;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = std::min(path.find('/', begin), path.size());
    const std::string_view element = path.substr(begin, end - begin);
    if (element.empty() || element == "." || element == "..")
      return false;
    if (end == path.size())
      return true;
    begin = end + 1;
  }
}

// The clean, relative form of relpath; "" for the context root.
std::string_view normalize(std::string_view relpath, std::string& storage) {
  if (is_clean_relative(relpath))
    return relpath;
  storage = clean_path(relpath);
  std::string_view path = storage;
  while (!path.empty() && path.front() == '/')
    path.remove_prefix(1);
  if (path == ".")
    path = {};
  return path;
}

std::string read_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error("cannot read " + path.string() + ": " + std::system_category().message(errno));
  }
  std::string content;
  std::array<char, 65536> buffer;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error("cannot read " + path.string() + ": " + std::system_category().message(err));
    }
    if (n == 0)
      break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace

struct IgnoreMatcher::Compiled {
  std::vector<Program> programs;  // parallel to patterns_
  bool has_exclusions = false;
};

std::string clean_path(std::string_view path) {
  if (path.empty())
    return ".";
  const bool rooted = path.front() == '/';
  std::string out;
  out.reserve(path.size());
  // out never shrinks below `floor`: the root '/', or ".." elements a relative path starts with.
  std::size_t floor = 0;
  if (rooted) {
    out += '/';
    floor = 1;
  }
  std::size_t r = 0;
  while (r < path.size()) {
    if (path[r] == '/') {
      ++r;
      continue;
    }
    const std::size_t end = std::min(path.find('/', r), path.size());
    const std::string_view element = path.substr(r, end - r);
    r = end;
    if (element == ".")
      continue;
    if (element == "..") {
      if (out.size() > floor) {
        std::size_t w = out.size() - 1;
        while (w > floor && out[w] != '/')
          --w;
        out.resize(w);
      } else if (!rooted) {
        if (!out.empty())
          out += '/';
        out += "..";
        floor = out.size();
      }
      continue;
    }
    if (out.size() != (rooted ? 1u : 0u))
      out += '/';
    out += element;
  }
  return out.empty() ? "." : out;
}

IgnoreMatcher IgnoreMatcher::parse(std::string_view content, const std::string& file) {
  IgnoreMatcher matcher;
  matcher.source_ = file;
  auto compiled = std::make_shared<Compiled>();

  if (starts_with(content, "\xEF\xBB\xBF"))
    content.remove_prefix(3);
  int line_number = 0;
  for (std::size_t pos = 0; pos < content.size();) {
    const std::size_t newline = content.find('\n', pos);
    const std::size_t end = newline == std::string_view::npos ? content.size() : newline;
    std::string_view line = content.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    // Comments are recognised before trimming: " # x" is a pattern.
    if (!line.empty() && line.front() == '#')
      continue;
    const Trimmed trimmed = trim_go_space(line);
    const std::string_view text = trimmed.text;
    if (text.empty())
      continue;
    const SourceLocation where{file, line_number, static_cast<int>(trimmed.leading_runes) + 1};

    // First pass (ignorefile.ReadAll): the '!' is set aside while the rest is cleaned and loses
    // one leading '/'.
    const bool invert = text.front() == '!';
    const std::string_view rest = invert ? trim_go_space(text.substr(1)).text : text;
    std::string pattern;
    if (!rest.empty()) {
      pattern = clean_path(rest);
      if (pattern.size() > 1 && pattern.front() == '/')
        pattern.erase(0, 1);
    }
    if (invert)
      pattern.insert(0, 1, '!');
    // Second pass (patternmatcher.New): trimmed and cleaned again with the '!' in place. This is
    // what turns "!/" into a bare "!", and drops a line that cleaning reduced to blanks.
    const std::string_view again = trim_go_space(pattern).text;
    if (again.empty())
      continue;
    pattern = clean_path(again);
    bool exclusion = false;
    if (pattern.front() == '!') {
      if (pattern.size() == 1)
        throw InputError(where, "illegal exclusion pattern: \"!\"");
      exclusion = true;
      pattern.erase(0, 1);
    }
    try {
      compiled->programs.push_back(compile(pattern));
    } catch (const SyntaxError& e) {
      throw InputError(where, "syntax error in pattern " + kiln::quote(text) + ": " + e.reason);
    }
    compiled->has_exclusions = compiled->has_exclusions || exclusion;
    matcher.patterns_.push_back(IgnorePattern{std::move(pattern), exclusion, line_number});
  }
  matcher.compiled_ = std::move(compiled);
  return matcher;
}

const IgnorePattern* IgnoreMatcher::deciding_pattern(std::string_view relpath) const {
  if (!compiled_ || patterns_.empty())
    return nullptr;
  std::string storage;
  const std::string_view path = normalize(relpath, storage);
  if (path.empty())
    return nullptr;  // moby never excludes the context root
  // The last matching pattern decides (moby evaluates all of them in order, but a pattern can
  // only flip the result to its own verdict), so search backwards and stop at the first match.
  for (std::size_t i = patterns_.size(); i-- > 0;) {
    if (matches_self_or_parent(compiled_->programs[i], path))
      return &patterns_[i];
  }
  return nullptr;
}

bool IgnoreMatcher::excluded(std::string_view relpath) const {
  const IgnorePattern* decider = deciding_pattern(relpath);
  return decider != nullptr && !decider->exclusion;
}

bool IgnoreMatcher::may_reinclude_below(std::string_view dir) const {
  if (!has_exclusions())
    return false;
  std::string storage;
  const std::string_view path = normalize(dir, storage);
  std::string prefix(path);
  if (!prefix.empty())
    prefix += '/';
  // Only exclusions can re-include, and one that matches dir itself (or a parent) cannot: dir is
  // excluded, so a later pattern matched dir, and it matches everything below dir as well.
  for (std::size_t i = 0; i < patterns_.size(); ++i) {
    if (patterns_[i].exclusion && matches_below(compiled_->programs[i], prefix))
      return true;
  }
  return false;
}

bool IgnoreMatcher::has_exclusions() const {
  return compiled_ && compiled_->has_exclusions;
}

std::optional<fs::path> find_ignore_file(const fs::path& context, const fs::path& containerfile) {
  auto exists = [](const fs::path& candidate) {
    std::error_code ec;
    const fs::file_status status = fs::symlink_status(candidate, ec);
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory) {
      throw Error("cannot examine " + candidate.string() + ": " + ec.message());
    }
    return !ec && status.type() != fs::file_type::not_found;
  };
  std::vector<fs::path> candidates;
  if (!containerfile.empty()) {
    candidates.emplace_back(containerfile.native() + ".containerignore");
    candidates.emplace_back(containerfile.native() + ".dockerignore");
  }
  candidates.push_back(context / ".containerignore");
  candidates.push_back(context / ".dockerignore");
  for (fs::path& candidate : candidates) {
    if (exists(candidate))
      return std::move(candidate);
  }
  return std::nullopt;
}

IgnoreMatcher load_ignore_rules(const fs::path& context, const fs::path& containerfile) {
  const std::optional<fs::path> file = find_ignore_file(context, containerfile);
  if (!file)
    return IgnoreMatcher();
  return IgnoreMatcher::parse(read_file(*file), file->string());
}

}  // namespace kiln::frontend
