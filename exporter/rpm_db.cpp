// The rpm database of an image, read with librpm (Debian's librpm-dev): its sqlite (rpm >= 4.16,
// Fedora 33+, RHEL 9), ndb (SUSE) or Berkeley DB (RHEL 7/8, read-only backend) formats.
#include "rpm_db.hpp"

#include <rpm/header.h>
#include <rpm/rpmdb.h>
#include <rpm/rpmlib.h>
#include <rpm/rpmmacro.h>
#include <rpm/rpmtag.h>
#include <rpm/rpmts.h>

#include <mutex>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::exporter::detail {
namespace fs = std::filesystem;
namespace {

// librpm keeps its configuration (macros) in process-global state.
std::mutex& rpm_mutex() {
  static std::mutex mutex;
  return mutex;
}

// The database directory inside `root`, with links resolved inside it (Fedora links
// /var/lib/rpm to ../../usr/lib/sysimage/rpm); nullopt when there is none.
std::optional<fs::path> database_dir(const fs::path& root) {
  for (const char* candidate : {"var/lib/rpm", "usr/lib/sysimage/rpm"}) {
    fs::path path = root / candidate;
    for (int hops = 0; hops < 8; ++hops) {
      std::error_code ec;
      if (!fs::is_symlink(fs::symlink_status(path, ec)))
        break;
      fs::path target = fs::read_symlink(path, ec);
      if (ec)
        break;
      fs::path relative = target.is_absolute()
                              ? target.relative_path()
                              : (path.parent_path() / target).lexically_relative(root);
      relative = relative.lexically_normal();
      if (relative.empty() || *relative.begin() == "..")
        return std::nullopt;  // out of the image
      path = root / relative;
    }
    std::error_code ec;
    if (fs::is_directory(fs::symlink_status(path, ec)))
      return path;
  }
  return std::nullopt;
}

const char* backend_of(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "rpmdb.sqlite", ec))
    return "sqlite";
  if (fs::exists(dir / "Packages.db", ec))
    return "ndb";
  if (fs::exists(dir / "Packages", ec))
    return "bdb_ro";
  return nullptr;
}

}  // namespace

std::optional<RpmDatabase> read_rpm_database(const fs::path& root) {
  std::optional<fs::path> dir = database_dir(root);
  if (!dir)
    return std::nullopt;
  const char* backend = backend_of(*dir);
  if (!backend)
    return std::nullopt;
  RpmDatabase out;
  out.path = dir->lexically_relative(root).string();
  // librpm may write beside the database (sqlite's -shm and -wal files): it reads a copy, so
  // the image's files stay as they are.
  TempDir copy({}, "kiln-rpmdb-");
  fs::path copied = copy.path() / "var/lib/rpm";
  fs::create_directories(copied);
  for (const auto& entry : fs::directory_iterator(*dir)) {
    if (entry.is_regular_file() && !entry.is_symlink())
      fs::copy_file(entry.path(), copied / entry.path().filename());
  }
  std::lock_guard lock(rpm_mutex());
  static bool configured = rpmReadConfigFiles(nullptr, nullptr) == 0;
  if (!configured)
    throw Error("SBOM: librpm cannot read its configuration");
  rpmPushMacro(nullptr, "_dbpath", nullptr, "/var/lib/rpm", RMIL_CMDLINE);
  rpmPushMacro(nullptr, "_db_backend", nullptr, backend, RMIL_CMDLINE);
  rpmts ts = rpmtsCreate();
  rpmtsSetRootDir(ts, copy.path().c_str());
  rpmtsSetVSFlags(ts, RPMVSF_MASK_NODIGESTS | RPMVSF_MASK_NOSIGNATURES);
  rpmdbMatchIterator it = rpmtsInitIterator(ts, RPMDBI_PACKAGES, nullptr, 0);
  bool opened = it != nullptr;
  for (Header h; it && (h = rpmdbNextIterator(it)) != nullptr;) {
    const char* name = headerGetString(h, RPMTAG_NAME);
    if (!name || std::string_view(name) == "gpg-pubkey")
      continue;
    RpmPackage p;
    p.name = name;
    auto text = [&](rpmTagVal tag) {
      const char* value = headerGetString(h, tag);
      return value ? std::string(value) : std::string();
    };
    p.version = text(RPMTAG_VERSION);
    p.release = text(RPMTAG_RELEASE);
    p.architecture = text(RPMTAG_ARCH);
    p.license = text(RPMTAG_LICENSE);
    p.vendor = text(RPMTAG_VENDOR);
    if (headerIsEntry(h, RPMTAG_EPOCH))
      p.epoch = std::to_string(headerGetNumber(h, RPMTAG_EPOCH));
    out.packages.push_back(std::move(p));
  }
  rpmdbFreeIterator(it);
  rpmtsFree(ts);
  rpmPopMacro(nullptr, "_db_backend");
  rpmPopMacro(nullptr, "_dbpath");
  if (!opened)
    throw Error("SBOM: librpm cannot open the rpm database " + out.path + " (" + backend + ")");
  return out;
}

}  // namespace kiln::exporter::detail
