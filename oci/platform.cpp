#include "kiln/oci/platform.hpp"

#include <sys/utsname.h>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace {

bool is_known_os(std::string_view os) {
  for (std::string_view known : {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd",
                                 "solaris", "illumos", "aix", "android", "ios", "plan9"}) {
    if (os == known)
      return true;
  }
  return false;
}

// Architecture aliases and default variants (containerd's normalizeArch).
void normalize_arch(std::string& arch, std::string& variant) {
  if (arch == "i386" || arch == "i686") {
    arch = "386";
    variant.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1")
      variant.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "8" || variant == "v8")
      variant.clear();
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7")
      variant = "v7";
    else if (variant == "5" || variant == "6" || variant == "8")
      variant = "v" + variant;
  }
}

bool is_known_arch(std::string_view arch) {
  for (std::string_view known :
       {"386", "amd64", "arm", "arm64", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le",
        "mips64", "mipsle", "mips", "loong64", "wasm"}) {
    if (arch == known)
      return true;
  }
  return false;
}

}  // namespace

std::string Platform::to_string() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty())
    out += "/" + variant;
  return out;
}

Platform normalize(Platform p) {
  p.os = to_lower(p.os);
  if (p.os == "macos")
    p.os = "darwin";
  p.architecture = to_lower(p.architecture);
  p.variant = to_lower(p.variant);
  normalize_arch(p.architecture, p.variant);
  return p;
}

Platform parse_platform(std::string_view spec) {
  std::vector<std::string> parts = split(spec, '/');
  auto fail = [&](const std::string& why) -> Platform {
    throw Error("invalid platform " + quote(spec) + ": " + why +
                " (expected OS/ARCH[/VARIANT], e.g. linux/arm64)");
  };
  for (const std::string& part : parts) {
    if (part.empty())
      return fail("empty component");
  }
  Platform p;
  if (parts.size() == 1) {
    std::string only = to_lower(parts[0]);
    if (is_known_os(only)) {
      p = host_platform();
      p.os = only;
      return normalize(p);
    }
    p = normalize({"linux", only, ""});
    if (!is_known_arch(p.architecture))
      return fail("unknown OS or architecture");
    return p;
  }
  if (parts.size() > 3)
    return fail("too many components");
  p = normalize({parts[0], parts[1], parts.size() == 3 ? parts[2] : ""});
  if (!is_known_os(p.os))
    return fail("unknown operating system " + quote(p.os));
  return p;
}

Platform host_platform() {
  struct utsname info {};
  std::string machine = uname(&info) == 0 ? info.machine : "x86_64";
  return normalize({"linux", machine, ""});
}

bool platform_matches(const Platform& want, const Platform& have) {
  Platform w = normalize(want);
  Platform h = normalize(have);
  if (w.os != h.os || w.architecture != h.architecture)
    return false;
  return w.variant.empty() || h.variant.empty() || w.variant == h.variant;
}

}  // namespace kiln::oci
