// Whether this machine can run programs built for another platform: natively (amd64 runs 386,
// arm64 runs arm where the CPU has AArch32), or through a QEMU user-mode handler registered in
// binfmt_misc (Debian's qemu-user-static + binfmt-support). kiln only detects and explains; it
// never registers handlers itself.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "kiln/oci/platform.hpp"

namespace kiln::runner {

// nullopt when RUN steps for `platform` can run here; otherwise the reason and how to fix it,
// e.g. "RUN steps for linux/arm64 need QEMU user emulation, but binfmt_misc has no enabled
// qemu-aarch64 handler: mount binfmt_misc, install qemu-user-static and binfmt-support, then
// `update-binfmts --enable qemu-aarch64`". A handler must carry the F (fix-binary) flag, since
// RUN steps exec inside their own root where the host's interpreter path does not exist.
// `binfmt_dir` is for tests.
std::optional<std::string> cannot_run(
    const oci::Platform& platform,
    const std::filesystem::path& binfmt_dir = "/proc/sys/fs/binfmt_misc");

// QEMU's name for an OCI architecture ("arm64" → "aarch64"); empty when unknown.
std::string qemu_arch(const std::string& oci_architecture);

}  // namespace kiln::runner
