#include "kiln/frontend/duration.hpp"

#include <array>
#include <limits>
#include <utility>

namespace kiln::frontend {

std::optional<int64_t> parse_go_duration(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text == "0")
    return 0;
  if (text.empty())
    return std::nullopt;
  static constexpr std::array<std::pair<std::string_view, int64_t>, 8> kUnits{{
      {"ns", 1},
      {"us", 1'000},
      {"\xC2\xB5s", 1'000},  // U+00B5 micro sign
      {"\xCE\xBCs", 1'000},  // U+03BC Greek mu
      {"ms", 1'000'000},
      {"s", 1'000'000'000},
      {"m", 60'000'000'000},
      {"h", 3'600'000'000'000},
  }};
  long double total = 0;
  while (!text.empty()) {
    long double value = 0;
    size_t digits = 0;
    while (!text.empty() && text.front() >= '0' && text.front() <= '9') {
      value = value * 10 + (text.front() - '0');
      text.remove_prefix(1);
      ++digits;
    }
    if (!text.empty() && text.front() == '.') {
      text.remove_prefix(1);
      long double scale = 0.1L;
      while (!text.empty() && text.front() >= '0' && text.front() <= '9') {
        value += scale * (text.front() - '0');
        scale /= 10;
        text.remove_prefix(1);
        ++digits;
      }
    }
    if (digits == 0)
      return std::nullopt;
    int64_t unit = 0;
    // Longest unit first so that "ms" is not read as "m" followed by "s".
    for (const auto& [name, nanos] : kUnits) {
      if (text.starts_with(name)) {
        unit = nanos;
        text.remove_prefix(name.size());
        break;
      }
    }
    if (unit == 0)
      return std::nullopt;
    total += value * static_cast<long double>(unit);
    if (total > static_cast<long double>(std::numeric_limits<int64_t>::max()))
      return std::nullopt;
  }
  auto nanos = static_cast<int64_t>(total);
  return negative ? -nanos : nanos;
}

}  // namespace kiln::frontend
