#include "source_reader.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include "kiln/base/strings.hpp"

namespace kiln::frontend::detail {
namespace {

bool is_continuation_byte(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Offset of the first byte that is not part of a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are ill-formed too), or npos.
size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t min = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = c & 0x07u;
    } else {
      return i;
    }
    if (i + len > s.size())
      return i;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if (!is_continuation_byte(cc))
        return i;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += len;
  }
  return std::string_view::npos;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_leading_whitespace(std::string_view s) {
  return trim_left(s);
}

bool is_comment_line(std::string_view line) {
  std::string_view t = trim_leading_whitespace(line);
  return !t.empty() && t.front() == '#';
}

// BuildKit's directive form: "#" [ws] name [ws] "=" [ws] value [ws], name = [a-zA-Z][a-zA-Z0-9]*.
struct DirectiveMatch {
  std::string name;
  std::string value;
  size_t value_offset = 0;
};

std::optional<DirectiveMatch> match_directive(std::string_view line) {
  size_t i = 0;
  if (line.empty() || line[0] != '#')
    return std::nullopt;
  ++i;
  auto skip_space = [&] {
    while (i < line.size() && is_space(line[i]))
      ++i;
  };
  skip_space();
  size_t name_start = i;
  auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  if (i >= line.size() || !is_alpha(line[i]))
    return std::nullopt;
  while (i < line.size() && (is_alpha(line[i]) || is_digit(line[i])))
    ++i;
  std::string_view name = line.substr(name_start, i - name_start);
  skip_space();
  if (i >= line.size() || line[i] != '=')
    return std::nullopt;
  ++i;
  skip_space();
  std::string_view value = trim_right(line.substr(i));
  if (value.empty())
    return std::nullopt;
  return DirectiveMatch{to_lower(name), std::string(value), i};
}

bool is_known_directive(std::string_view name) {
  return name == "syntax" || name == "escape" || name == "check";
}

// A line ends in a continuation when its last non-blank character is the escape character and
// the character before it is not another one: `a\\b\\` ends in an escaped escape and does not
// continue (BuildKit's rule; like BuildKit, an escaped escape before a continuation, three at
// the end, is not told apart). Returns the line without the escape character and the blanks
// after it.
std::optional<std::string_view> strip_continuation(std::string_view line, char escape) {
  size_t end = line.size();
  while (end > 0 && is_blank(line[end - 1]))
    --end;
  if (end == 0 || line[end - 1] != escape)
    return std::nullopt;
  if (end >= 2 && line[end - 2] == escape)
    return std::nullopt;
  return line.substr(0, end - 1);
}

}  // namespace

size_t count_code_points(std::string_view utf8) {
  return static_cast<size_t>(std::count_if(utf8.begin(), utf8.end(), [](char c) {
    return !is_continuation_byte(static_cast<unsigned char>(c));
  }));
}

SourceLocation LogicalLine::locate(size_t offset) const {
  if (segments.empty())
    return {file, first_line, 1};
  auto it = std::upper_bound(segments.begin(), segments.end(), offset,
                             [](size_t off, const Segment& s) { return off < s.offset; });
  const Segment& seg = it == segments.begin() ? segments.front() : *(it - 1);
  return {file, seg.line, seg.column + static_cast<int>(offset - seg.offset)};
}

LogicalLine LogicalLine::suffix(size_t offset) const {
  LogicalLine out;
  out.file = file;
  size_t byte = 0;
  for (size_t seen = 0; byte < text.size(); ++byte) {
    if (is_continuation_byte(static_cast<unsigned char>(text[byte])))
      continue;
    if (seen++ == offset)
      break;
  }
  out.text = text.substr(byte);
  SourceLocation start = locate(offset);
  out.segments.push_back({0, start.line, start.column});
  for (const Segment& seg : segments) {
    if (seg.offset > offset)
      out.segments.push_back({seg.offset - offset, seg.line, seg.column});
  }
  out.first_line = start.line;
  out.last_line = last_line;
  return out;
}

SourceReader::SourceReader(std::string_view bytes, std::string filename)
    : file_(std::move(filename)) {
  if (size_t bad = find_invalid_utf8(bytes); bad != std::string_view::npos) {
    std::string_view before = bytes.substr(0, bad);
    size_t line_start = before.rfind('\n');
    line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
    int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    int column = 1 + static_cast<int>(count_code_points(before.substr(line_start)));
    throw InputError({file_, line, column}, "invalid UTF-8");
  }
  if (bytes.starts_with("\xEF\xBB\xBF"))
    bytes.remove_prefix(3);
  size_t start = 0;
  while (start <= bytes.size()) {
    size_t nl = bytes.find('\n', start);
    if (nl == std::string_view::npos) {
      if (start < bytes.size())
        lines_.emplace_back(bytes.substr(start));
      break;
    }
    std::string_view line = bytes.substr(start, nl - start);
    if (line.ends_with('\r'))
      line.remove_suffix(1);
    lines_.emplace_back(line);
    start = nl + 1;
  }
  if (!lines_.empty() && lines_.back().ends_with('\r'))
    lines_.back().pop_back();
  read_directives();
}

SourceLocation SourceReader::location(size_t line_index, size_t byte_offset) const {
  std::string_view line = lines_[line_index];
  return {file_, static_cast<int>(line_index) + 1,
          1 + static_cast<int>(count_code_points(line.substr(0, byte_offset)))};
}

void SourceReader::read_directives() {
  // Directives are only recognised at the very top; the first line that is not a known directive
  // (an unknown one, a comment, a blank line, an instruction) ends them.
  for (size_t i = 0; i < lines_.size(); ++i) {
    auto match = match_directive(lines_[i]);
    if (!match || !is_known_directive(match->name))
      return;
    SourceLocation where = location(i, 0);
    for (const Directive& seen : directives_) {
      if (seen.name == match->name) {
        throw InputError(where, "only one " + match->name + " parser directive can be used");
      }
    }
    if (match->name == "escape") {
      if (match->value != "\\" && match->value != "`") {
        throw InputError(location(i, match->value_offset),
                         "invalid escape token '" + match->value + "' does not match ` or \\");
      }
      escape_ = match->value[0];
    }
    directives_.push_back({match->name, match->value, where});
    directive_lines_ = i + 1;
  }
}

bool SourceReader::next(LogicalLine& out) {
  out = LogicalLine{};
  out.file = file_;
  size_t offset = 0;  // code points in out.text so far

  auto append = [&](std::string_view piece, size_t line_index, size_t byte_offset) {
    if (piece.empty())
      return;
    out.segments.push_back(
        {offset, static_cast<int>(line_index) + 1, location(line_index, byte_offset).column});
    out.text += piece;
    offset += count_code_points(piece);
  };

  while (next_line_ < lines_.size()) {
    size_t index = next_line_++;
    std::string_view raw = lines_[index];
    std::string_view line = trim_leading_whitespace(raw);
    size_t lead = raw.size() - line.size();
    if (line.empty())
      continue;
    if (line.front() == '#') {
      // A comment: kept for the next instruction; a bare `#` forgets those before it.
      if (index < directive_lines_)
        continue;
      std::string_view text = trim(line.substr(1));
      if (text.empty())
        comments_.clear();
      else
        comments_.emplace_back(text);
      continue;
    }
    out.comments = std::exchange(comments_, {});

    out.first_line = out.last_line = static_cast<int>(index) + 1;
    auto body = strip_continuation(line, escape_);
    append(body ? *body : line, index, lead);
    bool continued = body.has_value();
    SourceLocation continuation_at = location(index, lead + (body ? body->size() : 0));
    bool empty_continuation = false;
    int empty_continuation_line = 0;
    while (continued) {
      if (next_line_ >= lines_.size()) {
        // BuildKit runs what it has; only a continuation that left the keyword alone is an error.
        if (trim(out.text).find_first_of(" \t") == std::string_view::npos) {
          throw InputError(continuation_at,
                           "unexpected end of file after line continuation: the instruction has "
                           "no arguments");
        }
        warnings_.push_back(
            {continuation_at, "line continuation at end of file: the last instruction ends here"});
        break;
      }
      size_t cont_index = next_line_++;
      std::string_view cont = lines_[cont_index];
      if (is_comment_line(cont))
        continue;
      if (trim_leading_whitespace(cont).empty()) {
        if (!empty_continuation)
          empty_continuation_line = static_cast<int>(cont_index) + 1;
        empty_continuation = true;
        continue;
      }
      out.last_line = static_cast<int>(cont_index) + 1;
      auto cont_body = strip_continuation(cont, escape_);
      append(cont_body ? *cont_body : cont, cont_index, 0);
      continued = cont_body.has_value();
      if (continued)
        continuation_at = location(cont_index, cont_body->size());
    }
    if (empty_continuation) {
      warnings_.push_back({{file_, empty_continuation_line, 1},
                           "Empty continuation line: empty lines inside a continued instruction "
                           "will become errors in a future release",
                           "NoEmptyContinuation"});
    }
    // Trailing whitespace is not part of the instruction.
    std::string_view trimmed = trim_right(out.text);
    out.text.resize(trimmed.size());
    if (out.text.empty())
      continue;  // e.g. a lone escape character
    return true;
  }
  return false;
}

std::string SourceReader::read_heredoc(const std::string& terminator, bool chomp,
                                       const SourceLocation& opened_at,
                                       SourceLocation& body_start) {
  body_start = {file_, static_cast<int>(next_line_) + 1, 1};
  std::string content;
  while (next_line_ < lines_.size()) {
    std::string_view line = lines_[next_line_++];
    std::string_view candidate = line;
    if (chomp) {
      while (!candidate.empty() && candidate.front() == '\t')
        candidate.remove_prefix(1);
    }
    if (candidate == terminator)
      return content;
    content += chomp ? candidate : line;
    content += '\n';
  }
  throw InputError(opened_at, "unterminated heredoc: no line \"" + terminator +
                                  "\" ends the here-document before the end of the file");
}

}  // namespace kiln::frontend::detail
