// `kiln version`: what this binary is, for bug reports: the version, the commit it was built
// from, the compiler, and the versions of the libraries that shape its output and its speed.
#include <archive.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <zstd.h>

#include <boost/version.hpp>
#include <nlohmann/json.hpp>
#include <ostream>

#include "app.hpp"

namespace kiln::cli {

int version_command(const std::vector<std::string>& args, Io io) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    io.out << "Usage: kiln version [--json]\n\nPrint kiln's version, commit, compiler and "
              "library versions.\n";
    return kExitOk;
  }
  bool json = args.size() == 1 && args[0] == "--json";
  if (!args.empty() && !json)
    throw UsageError("kiln version takes no arguments but --json", "kiln version [--json]");
  nlohmann::ordered_json info;
  info["version"] = KILN_VERSION;
  info["commit"] = KILN_COMMIT;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#endif
  info["libraries"] = {{"libcurl", curl_version_info(CURLVERSION_NOW)->version},
                       {"libarchive", archive_version_string()},
                       {"zstd", ZSTD_versionString()},
                       {"openssl", OpenSSL_version(OPENSSL_VERSION)},
                       {"boost", std::to_string(BOOST_VERSION / 100000) + "." +
                                     std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                                     std::to_string(BOOST_VERSION % 100)},
                       {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                                             std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                                             std::to_string(NLOHMANN_JSON_VERSION_PATCH)}};
  if (json) {
    io.out << info.dump(2) << "\n";
    return kExitOk;
  }
  io.out << "kiln version " << KILN_VERSION << " (commit " << KILN_COMMIT << ")\n"
         << "compiler: " << info.value("compiler", std::string("unknown")) << "\n";
  for (const auto& [name, version] : info["libraries"].items())
    io.out << name << ": " << version.get<std::string>() << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
