#include "kiln/runner/emulation.hpp"

#include <map>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::runner {
namespace fs = std::filesystem;

std::string qemu_arch(const std::string& arch) {
  static const std::map<std::string, std::string> names = {
      {"amd64", "x86_64"},       {"386", "i386"},      {"arm64", "aarch64"}, {"arm", "arm"},
      {"ppc64le", "ppc64le"},    {"ppc64", "ppc64"},   {"s390x", "s390x"},   {"riscv64", "riscv64"},
      {"mips64le", "mips64el"},  {"mips64", "mips64"}, {"mipsle", "mipsel"}, {"mips", "mips"},
      {"loong64", "loongarch64"}};
  auto it = names.find(arch);
  return it == names.end() ? std::string() : it->second;
}

namespace {

// Whether a binfmt_misc handler's text has "flags: ...F...": the kernel opened the interpreter
// when the handler was registered, so it works after pivot_root into any root.
bool fix_binary(const std::string& handler_text) {
  for (const std::string& line : split(handler_text, '\n')) {
    if (starts_with(line, "flags:"))
      return line.find('F', 6) != std::string::npos;
  }
  return false;
}

}  // namespace

std::optional<std::string> cannot_run(const oci::Platform& platform, const fs::path& binfmt_dir) {
  oci::Platform host = oci::host_platform();
  if (platform.os != host.os) {
    return "RUN steps for " + platform.to_string() + " cannot run on a " + host.os +
           " host (only the architecture can be emulated)";
  }
  if (platform.architecture == host.architecture ||
      (host.architecture == "amd64" && platform.architecture == "386")) {
    return std::nullopt;
  }
  std::string qemu = qemu_arch(platform.architecture);
  if (qemu.empty()) {
    return "RUN steps for " + platform.to_string() +
           " need emulation, and kiln knows no QEMU name for architecture " + platform.architecture;
  }
  std::string handler = "qemu-" + qemu;
  std::string why;
  if (!fs::exists(binfmt_dir / "status")) {
    why =
        "binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc " + binfmt_dir.string() + ")";
  } else {
    std::string text;
    try {
      text = read_file(binfmt_dir / handler);
    } catch (const Error&) {
      why = "binfmt_misc has no " + handler + " handler";
    }
    if (why.empty() && !starts_with(text, "enabled"))
      why = "the " + handler + " handler in binfmt_misc is disabled";
    if (why.empty() && read_file(binfmt_dir / "status").find("enabled") != 0)
      why = "binfmt_misc is disabled";
    if (why.empty() && !fix_binary(text)) {
      // Without F the kernel opens the interpreter at exec time, inside the step's root, where
      // the host's QEMU does not exist: every RUN would fail with a bare ENOENT.
      return "RUN steps for " + platform.to_string() + " need QEMU user emulation, but the " +
             handler + " handler in binfmt_misc is registered without the F (fix-binary) flag, " +
             "so its interpreter cannot be found inside the build's root: re-register it with " +
             "the flag (`apt-get install --reinstall qemu-user-static binfmt-support` does)";
    }
    if (why.empty())
      return std::nullopt;
  }
  return "RUN steps for " + platform.to_string() + " need QEMU user emulation, but " + why +
         ": install qemu-user-static and binfmt-support, then run `update-binfmts --enable " +
         handler + "`";
}

}  // namespace kiln::runner
