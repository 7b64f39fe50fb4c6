#include "kiln/base/error.hpp"

#include <utility>

namespace kiln {

std::string SourceLocation::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0)
      out += ':' + std::to_string(column);
  }
  return out;
}

InputError::InputError(SourceLocation where, std::string detail)
    : Error(where.to_string() + ": " + detail),
      where_(std::move(where)),
      detail_(std::move(detail)) {}

}  // namespace kiln
