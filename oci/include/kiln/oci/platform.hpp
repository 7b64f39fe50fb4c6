// OCI platforms ("os/arch[/variant]") as the image index and `--platform` use them.
#pragma once

#include <string>
#include <string_view>

namespace kiln::oci {

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;  // empty when the architecture has none or it is the default

  // "linux/arm64", "linux/arm/v7".
  std::string to_string() const;
  friend bool operator==(const Platform&, const Platform&) = default;
};

// Parses and normalises a platform specifier the way containerd does: "linux/amd64",
// "linux/arm64/v8" (→ linux/arm64), "linux/arm" (→ linux/arm/v7), "aarch64" (→ linux/arm64),
// "x86_64" (→ linux/amd64), "armhf" (→ linux/arm/v7), "i386" (→ linux/386); a lone OS name gets
// the host's architecture. Throws kiln::Error naming the specifier when it cannot be read.
Platform parse_platform(std::string_view spec);

// Normalises an already split platform (same rules as parse_platform).
Platform normalize(Platform platform);

// The platform this process runs on (Linux, with the architecture from uname).
Platform host_platform();

// True when an image for `have` can serve a request for `want` (same OS and architecture; the
// variant must match when both name one).
bool platform_matches(const Platform& want, const Platform& have);

}  // namespace kiln::oci
