#include "kiln/solver/url_fetch.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

struct Sink {
  int fd;
  oci::Sha256 hash;
  std::string path;
  std::string error;
};

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t n = size * count;
  try {
    write_all(sink->fd, data, n, sink->path);
    sink->hash.update(data, n);
  } catch (const Error& e) {
    sink->error = e.what();
    return 0;  // aborts the transfer
  }
  return n;
}

std::string name_of(const std::string& url) {
  std::string rest = url.substr(url.find("://") + 3);
  size_t end = rest.find_first_of("?#");
  if (end != std::string::npos)
    rest = rest.substr(0, end);
  size_t slash = rest.find('/');
  if (slash == std::string::npos)
    return {};
  std::string path = rest.substr(slash);
  return path.substr(path.rfind('/') + 1);
}

}  // namespace

bool is_url(const std::string& source) {
  std::string lower = to_lower(source.substr(0, 8));
  return starts_with(lower, "http://") || starts_with(lower, "https://");
}

Download fetch_url(const std::string& url, const fs::path& dir,
                   const std::optional<std::string>& checksum) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  static std::atomic<unsigned> counter{0};
  Download d;
  d.name = name_of(url);
  d.file = dir / ("download-" + std::to_string(counter++));
  UniqueFd fd = open_or_throw(d.file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  Sink sink{fd.get(), {}, d.file.string(), {}};

  CURL* curl = curl_easy_init();
  if (!curl)
    throw Error(url + ": cannot start a transfer");
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_FILETIME, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled transfer (under 1 byte/s for a minute) is an error rather than a hang.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "kiln");
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_off_t filetime = -1;
  curl_easy_getinfo(curl, CURLINFO_FILETIME_T, &filetime);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    std::string why = !sink.error.empty() ? sink.error
                      : rc == CURLE_HTTP_RETURNED_ERROR
                          ? "HTTP " + std::to_string(status)
                          : std::string(*error ? error : curl_easy_strerror(rc));
    throw Error("download of " + url + " failed: " + why);
  }
  if (filetime >= 0)
    d.last_modified = static_cast<int64_t>(filetime);
  d.digest = sink.hash.finish();
  if (checksum && *checksum != d.digest.str()) {
    throw Error(url + ": --checksum " + *checksum + " does not match the content (" +
                d.digest.str() + ")");
  }
  return d;
}

}  // namespace kiln::solver
