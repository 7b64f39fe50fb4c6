// Unpacking a tar archive that is hostile input (an oci-archive, an ADD archive, a build context
// given as a tar) into a directory, the one way kiln does it: any compression libarchive detects;
// absolute names land inside the directory; a ".." component, writing through a symlink and a
// hard link out of the directory are refused (libarchive's SECURE_NODOTDOT and
// SECURE_SYMLINKS); the sizes the entries declare may add up to at most expansion_limit()
// (layer_blob.hpp) of the archive's size; every write is checked, so a full disk is an error
// rather than a truncated file.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

struct archive_entry;

namespace kiln::oci {

struct ExtractOptions {
  // What of each entry's metadata is restored besides its content: times and permission bits
  // (setuid and friends included), owners (only root can), extended attributes.
  bool times = true, permissions = true, owners = false, xattrs = false;
  // Called with each entry (its name still as the archive has it) before it is written; may
  // throw kiln::Error to refuse the archive.
  std::function<void(archive_entry*)> on_entry;
};

// Whether `file` reads as a tar archive (any compression): its first header parses.
bool is_tar(const std::filesystem::path& file);

// Unpacks `archive` into the existing directory `dir`. Entries named "" or "." (the archive's
// root) are skipped. Throws kiln::Error "WHAT: CAUSE".
void extract_tar(const std::filesystem::path& archive, const std::filesystem::path& dir,
                 const std::string& what, const ExtractOptions& options = {});

}  // namespace kiln::oci
