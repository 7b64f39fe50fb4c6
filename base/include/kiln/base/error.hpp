// Errors that cross module boundaries.
//
// kiln reports every failure as one line that says what failed, on which input, and why. Inside a
// module, functions throw kiln::Error (or a subclass); the CLI catches it at the top, prints what()
// and maps it to an exit code. what() is always the complete, user-facing message.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

// A position in a user-supplied file. line and column are 1-based; 0 means "unknown".
// Columns count Unicode code points, as editors do.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  // "FILE:LINE:COL", "FILE:LINE" or "FILE" depending on what is known.
  std::string to_string() const;
  friend bool operator==(const SourceLocation&, const SourceLocation&) = default;
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An error in user input (a Containerfile, an ignore file, a flag value) with a position.
// what() is "FILE:LINE:COL: detail".
class InputError : public Error {
 public:
  InputError(SourceLocation where, std::string detail);

  const SourceLocation& where() const noexcept { return where_; }
  const std::string& detail() const noexcept { return detail_; }

 private:
  SourceLocation where_;
  std::string detail_;
};

}  // namespace kiln
