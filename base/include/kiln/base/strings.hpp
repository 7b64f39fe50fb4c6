// Small string helpers shared by all modules. All functions are pure and thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// ASCII-only case folding: Containerfile keywords, flag names and directive names are ASCII.
std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// Whitespace here means ' ', '\t', '\v', '\f', '\r', '\n'.
bool is_space(char c);
std::string_view trim(std::string_view s);
std::string_view trim_left(std::string_view s);
std::string_view trim_right(std::string_view s);

// Splits on every occurrence of sep; "a,,b" gives {"a", "", "b"}; "" gives {""}.
std::vector<std::string> split(std::string_view s, char sep);

// Splits "a=1,b=\"x,y\"" on `sep` outside double quotes and drops the quotes: {"a=1", "b=x,y"}.
// The form of --mount, --output and --secret values.
std::vector<std::string> split_unquoted(std::string_view s, char sep);

bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);

// Joins parts with sep between them.
std::string join(const std::vector<std::string>& parts, std::string_view sep);

// The Levenshtein distance between a and b (insertions, deletions and substitutions of bytes).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `name` by edit_distance when it is close enough to be a likely typo
// (at most a third of the longer name's length, and at least 1 apart from nothing); ties go to
// the first. Empty when none is.
std::string closest_match(std::string_view name, const std::vector<std::string>& candidates);

// Quotes s for a one-line message: "..." with ", \ and control characters escaped.
std::string quote(std::string_view s);

}  // namespace kiln
