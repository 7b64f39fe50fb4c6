#include "kiln/frontend/shell_lexer.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::frontend {
namespace {

constexpr int kEof = -1;
// Stands for a multi-byte character where only ASCII characters have a meaning.
constexpr int kOtherChar = -2;
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// ---------------------------------------------------------------------------------------------
// UTF-8 units: a valid UTF-8 sequence, or a single byte that does not start one. Working in units
// keeps `?` from splitting a character and keeps invalid bytes intact.

struct Unit {
  std::string_view bytes;
  char32_t code_point;  // invalid bytes map to 0xDC00 + byte, which no valid sequence decodes to
};

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

// Follows the rules of Go's utf8.DecodeRune so that units line up with Go's runes: no overlong
// forms, no surrogates, nothing above U+10FFFF.
Unit decode_unit(std::string_view text, std::size_t pos) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = at(0);
  const Unit invalid{text.substr(pos, 1), static_cast<char32_t>(0xDC00 + lead)};
  if (lead < 0x80) {
    return {text.substr(pos, 1), lead};
  }
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    low = lead == 0xE0 ? 0xA0 : 0x80;
    high = lead == 0xED ? 0x9F : 0xBF;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    low = lead == 0xF0 ? 0x90 : 0x80;
    high = lead == 0xF4 ? 0x8F : 0xBF;
  } else {
    return invalid;
  }
  if (pos + length > text.size() || at(1) < low || at(1) > high) {
    return invalid;
  }
  char32_t code_point = lead & (0xFF >> (length + 1));
  for (std::size_t i = 1; i < length; ++i) {
    if (!is_continuation(at(i))) {
      return invalid;
    }
    code_point = (code_point << 6) | (at(i) & 0x3F);
  }
  return {text.substr(pos, length), code_point};
}

std::vector<Unit> split_units(std::string_view text) {
  std::vector<Unit> units;
  units.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    units.push_back(decode_unit(text, pos));
    pos += units.back().bytes.size();
  }
  return units;
}

// ---------------------------------------------------------------------------------------------
// Pattern engine shared by both glob dialects.

enum class TokenKind { kLiteral, kAnyChar, kStar, kBracket };

struct CharRange {
  char32_t first;
  char32_t last;
};

struct PatternToken {
  TokenKind kind = TokenKind::kLiteral;
  std::string_view literal;  // one unit, for kLiteral
  bool negated = false;      // for kBracket
  std::vector<CharRange> ranges;
};

struct MatchRules {
  // Lazy stars give BuildKit's `${V#p}`; greedy ones its `${V##p}` and `${V/p/r}`.
  bool lazy_stars = false;
  // BuildKit compiles patterns to Go regexps, where `.` does not match a newline.
  bool wildcards_skip_newline = false;
  bool anchor_end = false;
};

// Finds where a match that starts at a given unit ends, choosing among several possible ends the
// way a backtracking regexp engine (and so Go's leftmost-first regexp) would: star lengths are
// tried shortest-first when lazy and longest-first otherwise, earlier stars first.
class PatternMatcher {
 public:
  PatternMatcher(const std::vector<PatternToken>& tokens, const std::vector<Unit>& units,
                 MatchRules rules)
      : tokens_(tokens),
        units_(units),
        rules_(rules),
        dead_((tokens.size() + 1) * (units.size() + 1), false) {}

  std::optional<std::size_t> match_at(std::size_t start) { return match_from(0, start); }

  // Leftmost start at or after `from` that matches, with its end.
  std::optional<std::pair<std::size_t, std::size_t>> search(std::size_t from) {
    for (std::size_t start = from; start <= units_.size(); ++start) {
      if (auto end = match_at(start)) {
        return std::make_pair(start, *end);
      }
    }
    return std::nullopt;
  }

 private:
  bool wildcard_accepts(std::size_t pos) const {
    return !(rules_.wildcards_skip_newline && units_[pos].bytes == "\n");
  }

  static bool bracket_accepts(const PatternToken& token, char32_t code_point) {
    bool member = false;
    for (const CharRange& range : token.ranges) {
      if (code_point >= range.first && code_point <= range.last) {
        member = true;
        break;
      }
    }
    return member != token.negated;
  }

  bool single_accepts(const PatternToken& token, std::size_t pos) const {
    if (pos >= units_.size()) {
      return false;
    }
    switch (token.kind) {
      case TokenKind::kLiteral:
        return units_[pos].bytes == token.literal;
      case TokenKind::kAnyChar:
        return wildcard_accepts(pos);
      case TokenKind::kBracket:
        return bracket_accepts(token, units_[pos].code_point);
      case TokenKind::kStar:
        break;
    }
    return false;
  }

  // Recurses only at stars, so the depth is bounded by their number rather than the pattern's
  // length.
  std::optional<std::size_t> match_from(std::size_t index, std::size_t pos) {
    // A state that failed once fails again however it is reached, which keeps consecutive stars
    // from going exponential.
    const std::size_t state = index * (units_.size() + 1) + pos;
    if (dead_[state]) {
      return std::nullopt;
    }
    std::size_t i = index;
    std::size_t p = pos;
    while (i < tokens_.size() && tokens_[i].kind != TokenKind::kStar) {
      if (!single_accepts(tokens_[i], p)) {
        dead_[state] = true;
        return std::nullopt;
      }
      ++i;
      ++p;
    }
    if (i == tokens_.size()) {
      if (rules_.anchor_end && p != units_.size()) {
        dead_[state] = true;
        return std::nullopt;
      }
      return p;
    }
    std::size_t reach = p;
    while (reach < units_.size() && wildcard_accepts(reach)) {
      ++reach;
    }
    std::optional<std::size_t> end;
    if (rules_.lazy_stars) {
      for (std::size_t stop = p; stop <= reach && !end; ++stop) {
        end = match_from(i + 1, stop);
      }
    } else {
      for (std::size_t stop = reach + 1; stop-- > p && !end;) {
        end = match_from(i + 1, stop);
      }
    }
    if (!end) {
      dead_[state] = true;
    }
    return end;
  }

  const std::vector<PatternToken>& tokens_;
  const std::vector<Unit>& units_;
  MatchRules rules_;
  std::vector<bool> dead_;
};

PatternToken make_token(TokenKind kind, std::string_view literal = {}) {
  PatternToken token;
  token.kind = kind;
  token.literal = literal;
  return token;
}

// Parses `[...]` starting at units[pos] (the `[`). Returns the index past the closing `]`, or
// nothing when the bracket is not closed and so must be taken literally.
std::optional<std::size_t> parse_bracket(const std::vector<Unit>& units, std::size_t pos,
                                         PatternToken& token) {
  token = make_token(TokenKind::kBracket);
  std::size_t i = pos + 1;
  // Go's filepath.Match (what BuildKit's COPY uses): only `^` negates; `[!a]` is a class of `!`
  // and `a`.
  if (i < units.size() && units[i].bytes == "^") {
    token.negated = true;
    ++i;
  }
  const std::size_t first_member = i;
  while (i < units.size()) {
    if (units[i].bytes == "]" && i != first_member) {
      return i + 1;
    }
    if (units[i].bytes == "\\" && i + 1 < units.size()) {
      ++i;
    }
    char32_t low = units[i].code_point;
    char32_t high = low;
    ++i;
    if (i + 1 < units.size() && units[i].bytes == "-" && units[i + 1].bytes != "]") {
      ++i;
      if (units[i].bytes == "\\" && i + 1 < units.size()) {
        ++i;
      }
      high = units[i].code_point;
      ++i;
    }
    token.ranges.push_back({low, high});
  }
  return std::nullopt;
}

std::vector<PatternToken> compile_glob(const std::vector<Unit>& units) {
  std::vector<PatternToken> tokens;
  for (std::size_t i = 0; i < units.size();) {
    const std::string_view unit = units[i].bytes;
    if (unit == "*") {
      tokens.push_back(make_token(TokenKind::kStar));
      ++i;
    } else if (unit == "?") {
      tokens.push_back(make_token(TokenKind::kAnyChar));
      ++i;
    } else if (unit == "\\" && i + 1 < units.size()) {
      tokens.push_back(make_token(TokenKind::kLiteral, units[i + 1].bytes));
      i += 2;
    } else if (unit == "[") {
      PatternToken bracket;
      if (auto after = parse_bracket(units, i, bracket)) {
        tokens.push_back(std::move(bracket));
        i = *after;
      } else {
        tokens.push_back(make_token(TokenKind::kLiteral, unit));
        ++i;
      }
    } else {
      tokens.push_back(make_token(TokenKind::kLiteral, unit));
      ++i;
    }
  }
  return tokens;
}

// BuildKit's dialect for ${V#p}, ${V%p} and ${V/p/r}. The pattern still carries the escapes the
// lexer kept for it; `\}` and `\/` only had to be escaped to get through the lexer.
std::vector<PatternToken> compile_buildkit_pattern(std::string_view pattern) {
  // BuildKit reads the pattern with Go's text/scanner, which skips a leading byte order mark.
  if (pattern.starts_with(kByteOrderMark)) {
    pattern.remove_prefix(kByteOrderMark.size());
  }
  const std::vector<Unit> units = split_units(pattern);
  std::vector<PatternToken> tokens;
  for (std::size_t i = 0; i < units.size(); ++i) {
    const std::string_view unit = units[i].bytes;
    if (unit == "*") {
      tokens.push_back(make_token(TokenKind::kStar));
    } else if (unit == "?") {
      tokens.push_back(make_token(TokenKind::kAnyChar));
    } else if (unit == "\\") {
      const std::string_view next = i + 1 < units.size() ? units[i + 1].bytes : kReplacementChar;
      if (next == "}" || next == "/") {
        continue;
      }
      if (next != "*" && next != "?" && next != "\\") {
        throw ExpansionError("invalid pattern (" + std::string(pattern) +
                             ") in substitution: invalid escape '\\" + std::string(next) + "'");
      }
      tokens.push_back(make_token(TokenKind::kLiteral, next));
      ++i;
    } else {
      tokens.push_back(make_token(TokenKind::kLiteral, unit));
    }
  }
  return tokens;
}

std::string join_units(std::vector<Unit>::const_iterator first,
                       std::vector<Unit>::const_iterator last) {
  std::string out;
  for (; first != last; ++first) {
    out += first->bytes;
  }
  return out;
}

std::string trim_prefix(std::string_view pattern, std::string_view value, bool greedy) {
  const std::vector<PatternToken> tokens = compile_buildkit_pattern(pattern);
  const std::vector<Unit> units = split_units(value);
  PatternMatcher matcher(tokens, units, {.lazy_stars = !greedy, .wildcards_skip_newline = true});
  const std::optional<std::size_t> end = matcher.match_at(0);
  if (!end) {
    return std::string(value);
  }
  return join_units(units.begin() + static_cast<std::ptrdiff_t>(*end), units.end());
}

// BuildKit finds the shortest or longest suffix by reversing both pattern and value and trimming
// a prefix; the reversal keeps each `\x` pair in order. Doing the same (rather than searching
// suffixes directly) keeps its quirks, e.g. a pattern ending in a lone `\` is reversed into one
// that escapes its former last character.
std::string trim_suffix(std::string_view pattern, std::string_view value, bool greedy) {
  const std::vector<Unit> pattern_units = split_units(pattern);
  std::vector<std::string_view> reversed(pattern_units.size());
  const std::size_t last = pattern_units.size() - 1;  // wraps when empty, but then unused
  for (std::size_t i = 0; i < pattern_units.size();) {
    const std::size_t out = last - i;
    if (pattern_units[i].bytes == "\\" && i != last) {
      reversed[out - 1] = pattern_units[i].bytes;
      reversed[out] = pattern_units[i + 1].bytes;
      i += 2;
    } else {
      reversed[out] = pattern_units[i].bytes;
      ++i;
    }
  }
  std::string reversed_pattern;
  for (std::string_view unit : reversed) {
    reversed_pattern += unit;
  }
  const std::vector<PatternToken> tokens = compile_buildkit_pattern(reversed_pattern);

  const std::vector<Unit> units = split_units(value);
  const std::vector<Unit> reversed_units(units.rbegin(), units.rend());
  PatternMatcher matcher(tokens, reversed_units,
                         {.lazy_stars = !greedy, .wildcards_skip_newline = true});
  const std::optional<std::size_t> cut = matcher.match_at(0);
  if (!cut) {
    return std::string(value);
  }
  return join_units(units.begin(), units.end() - static_cast<std::ptrdiff_t>(*cut));
}

bool is_ascii_letter(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_ascii_digit(int c) {
  return c >= '0' && c <= '9';
}
bool is_name_char(int c) {
  return is_ascii_letter(c) || is_ascii_digit(c) || c == '_';
}

// ${V//p/r} goes through Go's Regexp.ReplaceAllString, which expands `$` references in the
// replacement. The compiled pattern has no groups, so only `$0` (the match) and `$$` mean
// anything; other references vanish and a `$` that starts no reference stays. ${V/p/r} splices
// the replacement in literally, so this applies to the replace-all form only.
std::string expand_replacement(std::string_view replacement, std::string_view match) {
  std::string out;
  std::size_t i = 0;
  while (i < replacement.size()) {
    const std::size_t dollar = replacement.find('$', i);
    if (dollar == std::string_view::npos) {
      break;
    }
    out += replacement.substr(i, dollar - i);
    i = dollar + 1;
    if (i < replacement.size() && replacement[i] == '$') {
      out += '$';
      ++i;
      continue;
    }
    const bool brace = i < replacement.size() && replacement[i] == '{';
    std::size_t name_start = brace ? i + 1 : i;
    std::size_t name_end = name_start;
    while (name_end < replacement.size() && is_name_char(replacement[name_end])) {
      ++name_end;
    }
    const bool closed = !brace || (name_end < replacement.size() && replacement[name_end] == '}');
    if (name_end == name_start || !closed) {
      out += '$';
      continue;
    }
    if (replacement.substr(name_start, name_end - name_start) == "0") {
      out += match;
    }
    i = brace ? name_end + 1 : name_end;
  }
  out += replacement.substr(i);
  return out;
}

std::string replace_pattern(std::string_view pattern, std::string_view value,
                            std::string_view replacement, bool replace_all) {
  const std::vector<PatternToken> tokens = compile_buildkit_pattern(pattern);
  const std::vector<Unit> units = split_units(value);
  std::vector<std::size_t> offsets(units.size() + 1, 0);
  for (std::size_t i = 0; i < units.size(); ++i) {
    offsets[i + 1] = offsets[i] + units[i].bytes.size();
  }
  const auto bytes = [&](std::size_t from, std::size_t to) {
    return value.substr(offsets[from], offsets[to] - offsets[from]);
  };
  PatternMatcher matcher(tokens, units, {.lazy_stars = false, .wildcards_skip_newline = true});

  if (!replace_all) {
    const auto found = matcher.search(0);
    if (!found) {
      return std::string(value);
    }
    return std::string(bytes(0, found->first)) + std::string(replacement) +
           std::string(bytes(found->second, units.size()));
  }

  // Mirrors Go's Regexp.replaceAll: an empty match right after a previous match is not replaced,
  // and the search always moves on by at least one character.
  std::string out;
  std::size_t last_end = 0;
  std::size_t search_pos = 0;
  while (search_pos <= units.size()) {
    const auto found = matcher.search(search_pos);
    if (!found) {
      break;
    }
    const auto [start, end] = *found;
    out += bytes(last_end, start);
    if (end > last_end || start == 0) {
      out += expand_replacement(replacement, bytes(start, end));
    }
    last_end = end;
    const std::size_t width = search_pos < units.size() ? 1 : 0;
    if (search_pos + width > end) {
      search_pos += width;
    } else if (search_pos + 1 > end) {
      ++search_pos;
    } else {
      search_pos = end;
    }
  }
  out += bytes(last_end, units.size());
  return out;
}

// ---------------------------------------------------------------------------------------------
// The lexer.

bool is_ascii_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool is_special_param(int c) {
  switch (c) {
    case '@':
    case '*':
    case '#':
    case '?':
    case '-':
    case '$':
    case '!':
    case '0':
      return true;
    default:
      return false;
  }
}

// Collects the words of expand_words while the result string is built.
class WordSplitter {
 public:
  // Characters that came from unquoted text or an unquoted expansion: whitespace separates.
  void add_char(char c) {
    if (!is_ascii_space(static_cast<unsigned char>(c))) {
      add_raw_char(c);
    } else if (in_word_ && !word_.empty()) {
      words_.push_back(std::move(word_));
      word_.clear();
      in_word_ = false;
    }
  }
  void add_string(std::string_view text) {
    for (char c : text) {
      add_char(c);
    }
  }
  // Quoted or escaped characters: always part of the current word.
  void add_raw_char(char c) {
    word_ += c;
    in_word_ = true;
  }
  void add_raw_string(std::string_view text) {
    word_ += text;
    in_word_ = true;
  }
  // An empty quoted string marks a word as started but, as in BuildKit, never yields one.
  std::vector<std::string> finish() {
    if (!word_.empty()) {
      words_.push_back(std::move(word_));
      word_.clear();
      in_word_ = false;
    }
    return std::move(words_);
  }

 private:
  std::string word_;
  std::vector<std::string> words_;
  bool in_word_ = false;
};

struct Processed {
  std::string result;
  std::vector<std::string> words;
};

// One expansion run over one input. The structure follows BuildKit's shellWord closely on
// purpose: several of its observable quirks come from which nested call sees which setting.
class WordProcessor {
 public:
  WordProcessor(const ShellLexerOptions& options, const EnvLookup& env, std::string_view text)
      : options_(options), env_(env), text_(text), raw_escapes_(options.raw_escapes) {
    // Go's text/scanner, which BuildKit reads its input with, skips a leading byte order mark.
    if (text_.starts_with(kByteOrderMark)) {
      pos_ = kByteOrderMark.size();
    }
  }

  Processed process() { return process_stop_on(kEof, options_.raw_escapes); }

  std::set<std::string>& matched() { return matched_; }
  std::set<std::string>& unmatched() { return unmatched_; }

 private:
  int peek() const { return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_]) : kEof; }
  int next() {
    const int c = peek();
    if (c != kEof) {
      ++pos_;
    }
    return c;
  }
  // The next whole character, for places where it may end up in an error message.
  std::string_view next_unit() {
    if (pos_ >= text_.size()) {
      return {};
    }
    const std::string_view unit = decode_unit(text_, pos_).bytes;
    pos_ += unit.size();
    return unit;
  }

  // Reads up to (and consumes) `stop`, or to the end when stop is kEof. `raw_escapes` applies to
  // this stretch only, including double quotes inside it; nested ${...} words pick their own.
  Processed process_stop_on(int stop, bool raw_escapes) {
    const bool saved_raw_escapes = raw_escapes_;
    raw_escapes_ = raw_escapes;
    std::string result;
    WordSplitter words;
    while (peek() != kEof) {
      int c = peek();
      if (stop != kEof && c == stop) {
        next();
        raw_escapes_ = saved_raw_escapes;
        return {std::move(result), words.finish()};
      }
      if (c == '$') {
        const std::string value = process_dollar();
        result += value;
        check_length(result);
        words.add_string(value);
        continue;
      }
      if (c == '<') {
        const std::string value = process_possible_heredoc();
        result += value;
        words.add_raw_string(value);
        continue;
      }
      if (!options_.skip_quotes && (c == '\'' || c == '"')) {
        const std::string value = c == '\'' ? process_single_quote() : process_double_quote();
        result += value;
        words.add_raw_string(value);
        continue;
      }
      c = next();
      if (c == static_cast<unsigned char>(options_.escape)) {
        if (raw_escapes_) {
          words.add_raw_char(static_cast<char>(c));
          result += static_cast<char>(c);
        }
        c = next();
        if (c == kEof) {
          break;  // an escape at the very end is dropped
        }
        words.add_raw_char(static_cast<char>(c));
      } else {
        words.add_char(static_cast<char>(c));
      }
      result += static_cast<char>(c);
    }
    if (stop != kEof) {
      throw ExpansionError(std::string("unexpected end of statement while looking for matching ") +
                           static_cast<char>(stop));
    }
    raw_escapes_ = saved_raw_escapes;
    return {std::move(result), words.finish()};
  }

  // The word of a ${...} form. Running out of input anywhere inside it, even inside a nested
  // quote or expansion, is reported as the missing terminator of this form.
  std::string process_nested(int stop, bool raw_escapes, const char* eof_message) {
    try {
      return process_stop_on(stop, raw_escapes).result;
    } catch (const ExpansionError&) {
      if (peek() == kEof) {
        throw ExpansionError(eof_message);
      }
      throw;
    }
  }

  std::string process_single_quote() {
    std::string result;
    const int quote = next();
    if (options_.raw_quotes) {
      result += static_cast<char>(quote);
    }
    for (;;) {
      const int c = next();
      if (c == kEof) {
        throw ExpansionError("unexpected end of statement while looking for matching single-quote");
      }
      if (c == '\'') {
        if (options_.raw_quotes) {
          result += '\'';
        }
        return result;
      }
      result += static_cast<char>(c);
    }
  }

  std::string process_double_quote() {
    std::string result;
    const int quote = next();
    if (options_.raw_quotes) {
      result += static_cast<char>(quote);
    }
    const int escape = static_cast<unsigned char>(options_.escape);
    for (;;) {
      int c = peek();
      if (c == kEof) {
        throw ExpansionError("unexpected end of statement while looking for matching double-quote");
      }
      if (c == '"') {
        next();
        if (options_.raw_quotes) {
          result += '"';
        }
        return result;
      }
      if (c == '$') {
        result += process_dollar();
        check_length(result);
        continue;
      }
      c = next();
      if (c == escape) {
        // With raw escapes BuildKit writes the escape here and then writes it again below when
        // the next character is not one that can be escaped: `"\t"` becomes `"\\t"`.
        if (raw_escapes_) {
          result += static_cast<char>(c);
        }
        const int following = peek();
        if (following == kEof) {
          continue;
        }
        if (following == '"' || following == '$' || following == escape) {
          c = next();
        }
      }
      result += static_cast<char>(c);
    }
  }

  std::string process_possible_heredoc() {
    next();
    if (peek() != '<') {
      return "<";
    }
    next();
    // The blanks belong to the heredoc marker so that `<< EOF` stays one word.
    std::string result = "<<";
    while (peek() == ' ' || peek() == '\t' || peek() == '\r') {
      result += static_cast<char>(next());
    }
    return result;
  }

  // A name, a run of digits (positional parameters), or one special parameter character.
  std::string process_name() {
    std::string name;
    while (peek() != kEof) {
      const int c = peek();
      if (name.empty() && is_ascii_digit(c)) {
        while (is_ascii_digit(peek())) {
          name += static_cast<char>(next());
        }
        return name;
      }
      if (name.empty() && is_special_param(c)) {
        next();
        return std::string(1, static_cast<char>(c));
      }
      if (!is_name_char(c)) {
        break;
      }
      name += static_cast<char>(next());
    }
    return name;
  }

  std::pair<std::string, bool> get_env(const std::string& name) {
    std::optional<std::string> value;
    if (env_) {
      value = env_(name);
    }
    if (value) {
      matched_.insert(name);
      return {std::move(*value), true};
    }
    unmatched_.insert(name);
    return {std::string(), false};
  }

  std::string process_dollar() {
    // Each ${...} inside another recurses; a hostile word must not exhaust the stack.
    if (depth_ >= kMaxNesting) {
      throw ExpansionError("variable references nested more than " + std::to_string(kMaxNesting) +
                           " levels deep");
    }
    struct Level {
      int& depth;
      explicit Level(int& d) : depth(++d) {}
      ~Level() { --depth; }
    } level(depth_);
    next();  // the '$'
    if (peek() != '{') {
      std::string name = process_name();
      if (name.empty()) {
        return "$";
      }
      auto [value, set] = get_env(name);
      if (!set && options_.skip_unset) {
        return "$" + name;
      }
      return value;
    }

    next();  // the '{'
    switch (peek()) {
      case kEof:
        throw ExpansionError("syntax error: missing '}'");
      case '{':
      case '}':
      case ':':
        throw ExpansionError("syntax error: bad substitution");
      default:
        break;
    }
    const std::string name = process_name();
    if (peek() == kEof) {
      throw ExpansionError("syntax error: missing '}'");
    }
    const std::string_view modifier = next_unit();
    std::string modifier_text(modifier);
    const auto ascii = [](std::string_view unit) {
      return unit.size() == 1 ? static_cast<int>(static_cast<unsigned char>(unit[0]))
                              : (unit.empty() ? kEof : kOtherChar);
    };
    int ch = ascii(modifier);

    switch (ch) {
      case '}': {
        auto [value, set] = get_env(name);
        if (!set && options_.skip_unset) {
          return "${" + name + "}";
        }
        return value;
      }
      case ':': {
        // Whatever follows the ':' goes through the same path as `-+?#%`; BuildKit only
        // complains about an unknown one after reading the word and seeing the variable set.
        const std::string_view second = next_unit();
        modifier_text += second;
        ch = ascii(second);
        return process_modifier(name, ch, modifier_text, /*null_is_unset=*/true);
      }
      case '+':
      case '-':
      case '?':
      case '#':
      case '%':
        return process_modifier(name, ch, modifier_text, /*null_is_unset=*/false);
      case '/':
        return process_replacement(name);
      default:
        throw ExpansionError("unsupported modifier (" + modifier_text + ") in substitution");
    }
  }

  std::string process_modifier(const std::string& name, int ch, const std::string& modifier_text,
                               bool null_is_unset) {
    const bool pattern_word = ch == '#' || ch == '%';
    if (null_is_unset && pattern_word) {
      throw ExpansionError("unsupported modifier (" + modifier_text + ") in substitution");
    }
    // Pattern words keep their escapes: they are pattern syntax there.
    std::string word = process_nested('}', pattern_word, "syntax error: missing '}'");

    auto [value, set] = get_env(name);
    if (options_.skip_unset && !set) {
      return "${" + name + modifier_text + word + "}";
    }
    const bool unset_or_null = !set || (null_is_unset && value.empty());
    switch (ch) {
      case '-':
        return unset_or_null ? word : value;
      case '+':
        return unset_or_null ? std::string() : word;
      case '?':
        if (!set) {
          throw ExpansionError(name + ": " + (word.empty() ? "is not allowed to be unset" : word));
        }
        if (unset_or_null) {
          throw ExpansionError(name + ": " + (word.empty() ? "is not allowed to be empty" : word));
        }
        return value;
      case '#':
      case '%': {
        // A doubled operator asks for the longest match.
        const bool greedy = !word.empty() && word[0] == static_cast<char>(ch);
        const std::string_view pattern = std::string_view(word).substr(greedy ? 1 : 0);
        return ch == '%' ? trim_suffix(pattern, value, greedy)
                         : trim_prefix(pattern, value, greedy);
      }
      default:
        throw ExpansionError("unsupported modifier (" + modifier_text + ") in substitution");
    }
  }

  std::string process_replacement(const std::string& name) {
    const bool replace_all = peek() == '/';
    if (replace_all) {
      next();
    }
    const std::string pattern = process_nested('/', true, "syntax error: missing '/' in ${}");
    const std::string replacement = process_nested('}', true, "syntax error: missing '}'");

    auto [value, set] = get_env(name);
    if (options_.skip_unset && !set) {
      // BuildKit writes one slash here even for the replace-all form.
      return "${" + name + "/" + pattern + "/" + replacement + "}";
    }
    return replace_pattern(pattern, value, replacement, replace_all);
  }

  // Values built from values (ARG B=$A$A, ARG C=$B$B, ...) double at every step; a word may grow
  // to this much beyond its own text before it is refused.
  void check_length(const std::string& result) const {
    if (result.size() > kMaxGrowth + text_.size()) {
      throw ExpansionError("expands to more than " + std::to_string(kMaxGrowth >> 20) +
                           " MiB beyond its own text");
    }
  }

  static constexpr int kMaxNesting = 100;
  static constexpr std::size_t kMaxGrowth = std::size_t{1} << 20;

  const ShellLexerOptions& options_;
  const EnvLookup& env_;
  std::string_view text_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  bool raw_escapes_;
  std::set<std::string> matched_;
  std::set<std::string> unmatched_;
};

}  // namespace

ShellLexer::ShellLexer(ShellLexerOptions options) : options_(options) {}

std::string ShellLexer::expand_word(std::string_view word, const EnvLookup& env) const {
  return WordProcessor(options_, env, word).process().result;
}

ExpandResult ShellLexer::expand_word_with_matches(std::string_view word,
                                                  const EnvLookup& env) const {
  WordProcessor processor(options_, env, word);
  ExpandResult result;
  result.value = processor.process().result;
  result.matched = std::move(processor.matched());
  result.unmatched = std::move(processor.unmatched());
  return result;
}

std::vector<std::string> ShellLexer::expand_words(std::string_view text,
                                                  const EnvLookup& env) const {
  return WordProcessor(options_, env, text).process().words;
}

bool shell_pattern_match(std::string_view pattern, std::string_view text) {
  const std::vector<Unit> pattern_units = split_units(pattern);
  const std::vector<PatternToken> tokens = compile_glob(pattern_units);
  const std::vector<Unit> units = split_units(text);
  PatternMatcher matcher(tokens, units, {.anchor_end = true});
  return matcher.match_at(0).has_value();
}

}  // namespace kiln::frontend
