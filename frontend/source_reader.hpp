// The physical layer of a Containerfile: bytes → logical instruction lines.
//
// Everything that changes how lines are read lives here, before the grammar sees anything: UTF-8
// validation, the byte-order mark, CRLF, parser directives (which pick the escape character), line
// continuations (with comment and empty lines inside them), and here-document bodies, which the
// parser asks for after it has seen an instruction that opens them. Each logical line keeps a map
// back to file positions so that every token can be reported as FILE:LINE:COL.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/frontend/ast.hpp"

namespace kiln::frontend::detail {

// One instruction's text after joining continuation lines, with leading and trailing whitespace
// removed and comment lines inside the continuation dropped.
struct LogicalLine {
  // A run of text that came from one physical line.
  struct Segment {
    size_t offset = 0;  // code-point offset of the run in `text`
    int line = 0;       // physical line of the run
    int column = 0;     // code-point column of the run's first character on that line
  };

  std::string file;
  std::string text;
  std::vector<Segment> segments;
  int first_line = 0;
  int last_line = 0;
  std::vector<std::string> comments;  // Instruction::comments

  // Position in the file of the code point at `offset` in `text` (offsets past the end map to
  // just after the last character).
  SourceLocation locate(size_t offset) const;

  // The part of this line from code-point `offset` on, with positions kept (ONBUILD triggers).
  LogicalLine suffix(size_t offset) const;
};

// Reads a Containerfile one logical line at a time. Not thread-safe; one reader per file.
class SourceReader {
 public:
  // Validates the encoding, strips a UTF-8 byte-order mark, splits lines (LF or CRLF) and reads the
  // parser directives at the top. Throws InputError ("FILE:LINE:COL: invalid UTF-8", a duplicate
  // or malformed directive).
  SourceReader(std::string_view bytes, std::string filename);

  const std::vector<Directive>& directives() const { return directives_; }
  char escape() const { return escape_; }

  // Moves to the next instruction. Returns false at the end of the file. A file that ends in the
  // middle of a line continuation ends the instruction there with a warning (as BuildKit does),
  // or throws InputError when nothing but the keyword was read.
  bool next(LogicalLine& out);

  // Reads the body of a here-document that starts on the line after the current position and
  // ends at a line equal to `terminator` (after removing leading tabs when `chomp`). The body's
  // lines each end in '\n'; with `chomp` their leading tabs are removed. Throws InputError naming
  // `opened_at` when the file ends first.
  std::string read_heredoc(const std::string& terminator, bool chomp,
                           const SourceLocation& opened_at, SourceLocation& body_start);

  // Physical line number of the last line consumed so far.
  int current_line() const { return static_cast<int>(next_line_); }

  // Non-fatal findings so far (empty continuation lines).
  std::vector<Warning>& warnings() { return warnings_; }

 private:
  void read_directives();
  SourceLocation location(size_t line_index, size_t byte_offset) const;

  std::string file_;
  std::vector<std::string> lines_;  // physical lines without their line terminators
  size_t next_line_ = 0;            // index of the next unread physical line
  char escape_ = '\\';
  std::vector<Directive> directives_;
  size_t directive_lines_ = 0;         // the directives' lines at the top
  std::vector<std::string> comments_;  // comment lines since the last instruction
  std::vector<Warning> warnings_;
};

// Number of code points in a valid UTF-8 string.
size_t count_code_points(std::string_view utf8);

}  // namespace kiln::frontend::detail
