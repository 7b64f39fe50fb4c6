// Downloads for ADD <http(s) URL> and http(s) build contexts: the file, its name and its
// Last-Modified time.
//
// libcurl does the transfer, so the proxy environment (http_proxy, https_proxy, HTTPS_PROXY,
// no_proxy/NO_PROXY) is honoured the way curl honours it; TLS uses the system CAs. Redirects are
// followed. Only http and https are fetched.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "kiln/oci/digest.hpp"

namespace kiln::solver {

struct Download {
  std::filesystem::path file;  // the content, in the directory given to fetch_url
  std::string name;            // the last component of the URL's path ("" when it has none)
  std::optional<int64_t> last_modified;  // seconds since the epoch, from Last-Modified
  oci::Digest digest;                    // sha256 of the content
};

// True for "http://..." and "https://..." (case-insensitive scheme).
bool is_url(const std::string& source);

// Fetches `url` into a new file under `dir`. Throws kiln::Error naming the URL and the cause
// (HTTP status, connection error). When `checksum` ("sha256:HEX") is given, content that does
// not match is an error naming both digests.
Download fetch_url(const std::string& url, const std::filesystem::path& dir,
                   const std::optional<std::string>& checksum);

}  // namespace kiln::solver
