// Go's time.ParseDuration format, which Dockerfile HEALTHCHECK flags use ("1m30s", "500ms", "0").
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln::frontend {

// Nanoseconds, or nullopt when `text` is not a Go duration (or overflows int64).
std::optional<int64_t> parse_go_duration(std::string_view text);

}  // namespace kiln::frontend
