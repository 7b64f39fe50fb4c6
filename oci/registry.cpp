#include "kiln/oci/registry.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/auth_config.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/registries_conf.hpp"
#include "kiln/oci/www_authenticate.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Manifests and indexes are small; a registry that sends more is broken or hostile.
constexpr size_t kMaxManifestBytes = 4 << 20;
// Error bodies and token responses are kept only this far.
constexpr size_t kMaxSmallBody = 1 << 20;
constexpr int kMaxIndexDepth = 4;

const std::string& manifest_accept() {
  static const std::string accept = std::string("Accept: ") + media_type::kOciManifest + ", " +
                                    media_type::kOciIndex + ", " + media_type::kDockerManifest +
                                    ", " + media_type::kDockerManifestList;
  return accept;
}

// options.log is called from several threads; this keeps the calls apart.
std::mutex& log_mutex() {
  static std::mutex mutex;
  return mutex;
}

void log_line(const RegistryOptions& options, const std::string& line) {
  if (!options.log)
    return;
  std::lock_guard lock(log_mutex());
  options.log(line);
}

std::string escape(const std::string& text) {
  char* escaped = curl_easy_escape(nullptr, text.c_str(), static_cast<int>(text.size()));
  if (!escaped)
    throw Error("out of memory escaping a URL");
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

// The stall and deadline limits of every request (README, "Security"). KILN_REGISTRY_STALL_SECONDS
// shortens the stall time (tests of a registry that answers a byte a second).
constexpr long kStallBytes = 1024;
constexpr long kSmallRequestSeconds = 120;

long stall_seconds() {
  static const long seconds = [] {
    const char* value = std::getenv("KILN_REGISTRY_STALL_SECONDS");
    long n = value ? std::atol(value) : 0;
    return n > 0 ? n : 30L;
  }();
  return seconds;
}

std::string host_of_url(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme != std::string_view::npos)
    url.remove_prefix(scheme + 3);
  return std::string(url.substr(0, url.find_first_of("/?#")));
}

// localhost, 127.0.0.0/8 and [::1], with or without a port.
bool is_loopback(const std::string& host_port) {
  std::string host = host_port;
  if (starts_with(host, "[")) {
    host = host.substr(0, host.find(']') + 1);
  } else if (size_t colon = host.find(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || host == "[::1]" || starts_with(host, "127.");
}

std::string strip_parameters(const std::string& content_type) {
  return std::string(trim(std::string_view(content_type).substr(0, content_type.find(';'))));
}

// A request body: bytes in memory or a range of a file, read as curl asks for it.
struct Body {
  const std::string* bytes = nullptr;
  int fd = -1;
  int64_t offset = 0;  // of the range in fd
  int64_t length = 0;
  int64_t position = 0;  // how far curl has read
};

struct Request {
  std::string method = "GET";  // GET, HEAD, PUT, PATCH, POST, DELETE
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::optional<Body> body;
  bool follow_redirects = false;
  // Retry connection errors, 429 and 5xx here. Off for blob uploads, which must start again with
  // a new upload session instead.
  bool retry = true;
  // The body of a 2xx response streams here, with the status; every other body is kept in
  // Response::body, up to max_body bytes.
  std::function<void(long status, const char*, size_t)> sink;
  size_t max_body = kMaxSmallBody;
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the first of repeated ones
  std::string body;
  std::string hint;  // added to the error message when the request fails

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// One HTTP exchange: a response, or why none came.
struct Exchange {
  CURLcode code = CURLE_OK;
  std::string error;
  Response response;
  size_t sunk = 0;  // bytes given to the request's sink
  std::exception_ptr sink_error;
  bool too_large = false;
};

struct TransferState {
  CURL* handle;
  Request* request;
  Exchange* exchange;
};

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  size_t bytes = size * count;
  long status = 0;
  curl_easy_getinfo(state->handle, CURLINFO_RESPONSE_CODE, &status);
  if (state->request->sink && status / 100 == 2) {
    try {
      state->request->sink(status, data, bytes);
      state->exchange->sunk += bytes;
      return bytes;
    } catch (...) {
      state->exchange->sink_error = std::current_exception();
      return 0;
    }
  }
  std::string& body = state->exchange->response.body;
  if (body.size() + bytes > state->request->max_body) {
    state->exchange->too_large = true;
    return 0;
  }
  body.append(data, bytes);
  return bytes;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* body = static_cast<Body*>(user);
  size_t want = std::min(size * count, static_cast<size_t>(body->length - body->position));
  if (want == 0)
    return 0;
  if (body->bytes) {
    std::memcpy(buffer, body->bytes->data() + body->position, want);
    body->position += static_cast<int64_t>(want);
    return want;
  }
  ssize_t got;
  do {
    got = ::pread(body->fd, buffer, want, body->offset + body->position);
  } while (got < 0 && errno == EINTR);
  if (got <= 0)
    return CURL_READFUNC_ABORT;  // the file shrank or cannot be read
  body->position += got;
  return static_cast<size_t>(got);
}

int on_seek(void* user, curl_off_t offset, int origin) {
  auto* body = static_cast<Body*>(user);
  if (origin != SEEK_SET || offset < 0 || offset > body->length)
    return CURL_SEEKFUNC_CANTSEEK;
  body->position = offset;
  return CURL_SEEKFUNC_OK;
}

// Easy handles kept for reuse, so that their connections are reused too.
class HandlePool {
 public:
  HandlePool() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~HandlePool() {
    for (CURL* handle : idle_)
      curl_easy_cleanup(handle);
  }
  HandlePool(const HandlePool&) = delete;
  HandlePool& operator=(const HandlePool&) = delete;

  // A handle for one transfer, back in the pool when the lease ends.
  class Lease {
   public:
    Lease(HandlePool& pool, CURL* handle) : pool_(pool), handle_(handle) {}
    ~Lease() { pool_.give_back(handle_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    CURL* get() const { return handle_; }

   private:
    HandlePool& pool_;
    CURL* handle_;
  };

  Lease take() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        CURL* handle = idle_.back();
        idle_.pop_back();
        return Lease(*this, handle);
      }
    }
    CURL* handle = curl_easy_init();
    if (!handle)
      throw Error("cannot initialise libcurl");
    return Lease(*this, handle);
  }

 private:
  void give_back(CURL* handle) {
    curl_easy_reset(handle);
    std::lock_guard lock(mutex_);
    idle_.push_back(handle);
  }

  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// A registry's TLS files (RegistryOptions::cert_dir), read once.
struct TlsFiles {
  std::string ca_bundle;  // PEM: the system CAs, then the directory's *.crt; empty: none added
  std::string client_cert, client_key;  // paths; empty: no client certificate
};

// The system CA bundle libcurl uses by default, as PEM text ("" when it has none).
std::string system_ca_bundle() {
  std::unique_ptr<CURL, void (*)(CURL*)> h(curl_easy_init(), curl_easy_cleanup);
  char* cainfo = nullptr;
  if (h && curl_easy_getinfo(h.get(), CURLINFO_CAINFO, &cainfo) == CURLE_OK && cainfo) {
    try {
      return read_file(cainfo);
    } catch (const Error&) {
      return "";  // no system bundle: only the directory's CAs are trusted
    }
  }
  return "";
}

TlsFiles load_tls_files(const fs::path& dir, bool explicit_dir) {
  TlsFiles tls;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (explicit_dir)
      throw Error("--cert-dir " + dir.string() + ": not a directory");
    return tls;
  }
  std::vector<fs::path> entries;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    entries.push_back(e.path());
  if (ec)
    throw Error("reading the certificate directory " + dir.string() + ": " + ec.message());
  std::sort(entries.begin(), entries.end());
  std::string cas;
  for (const fs::path& p : entries) {
    std::string ext = p.extension().string();
    if (ext == ".crt") {
      cas += read_file(p) + "\n";
    } else if (ext == ".cert") {
      fs::path key = p;
      key.replace_extension(".key");
      if (!fs::exists(key, ec))
        throw Error("the client certificate " + p.string() + " has no key " + key.string());
      if (!tls.client_cert.empty())
        throw Error("the certificate directory " + dir.string() +
                    " holds more than one client certificate (*.cert)");
      tls.client_cert = p.string();
      tls.client_key = key.string();
    } else if (ext == ".key") {
      fs::path cert = p;
      cert.replace_extension(".cert");
      if (!fs::exists(cert, ec))
        throw Error("the client key " + p.string() + " has no certificate " + cert.string());
    }
  }
  if (!cas.empty())
    tls.ca_bundle = system_ca_bundle() + "\n" + cas;
  return tls;
}

TlsFiles find_tls_files(const RegistryOptions& options, const std::string& domain) {
  if (options.cert_dir)
    return load_tls_files(*options.cert_dir, true);
  std::vector<fs::path> candidates = {fs::path("/etc/containers/certs.d") / domain,
                                      fs::path("/etc/docker/certs.d") / domain};
  if (const char* home = std::getenv("HOME"); home && *home)
    candidates.push_back(fs::path(home) / ".config/containers/certs.d" / domain);
  std::error_code ec;
  for (const fs::path& dir : candidates) {
    if (fs::is_directory(dir, ec))
      return load_tls_files(dir, false);
  }
  return {};
}

Exchange perform(HandlePool& pool, Request& request, const std::string& authorization,
                 bool verify_tls, const TlsFiles* tls = nullptr) {
  Exchange exchange;
  HandlePool::Lease lease = pool.take();
  CURL* h = lease.get();
  TransferState state{h, &request, &exchange};
  char error_buffer[CURL_ERROR_SIZE] = {};

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const std::string& line) {
    curl_slist* list = curl_slist_append(headers.get(), line.c_str());
    if (!list)
      throw Error("out of memory building an HTTP request");
    (void)headers.release();
    headers.reset(list);
  };
  for (const std::string& line : request.headers)
    add_header(line);
  if (!authorization.empty())
    add_header("Authorization: " + authorization);

  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  // Registries, token servers and redirects speak HTTP: a realm or Location naming gopher://,
  // file:// or dict:// must not make kiln talk to anything else.
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  // A transfer slower than kStallBytes a second for kStallSeconds is stalled (a registry
  // answering a byte at a time must not hold a build forever); small requests (ping, token,
  // manifest, HEAD, mount) also have an overall deadline.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, kStallBytes);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_seconds());
  bool bulk = request.sink || (request.body && request.body->length > 0 &&
                               static_cast<size_t>(request.body->length) > kMaxSmallBody);
  if (!bulk)
    curl_easy_setopt(h, CURLOPT_TIMEOUT, kSmallRequestSeconds);
  if (!verify_tls) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    // Pooled handles keep options: back to the defaults before this request's own.
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  }
  curl_blob ca_blob{};
  if (tls && !tls->ca_bundle.empty()) {
    ca_blob.data = const_cast<char*>(tls->ca_bundle.data());
    ca_blob.len = tls->ca_bundle.size();
    ca_blob.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else {
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, nullptr);
  }
  bool client_cert = tls && !tls->client_cert.empty();
  curl_easy_setopt(h, CURLOPT_SSLCERT, client_cert ? tls->client_cert.c_str() : nullptr);
  curl_easy_setopt(h, CURLOPT_SSLKEY, client_cert ? tls->client_key.c_str() : nullptr);
  if (request.follow_redirects) {
    // libcurl does not send a custom Authorization header to another host.
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &state);

  Body* body = request.body ? &*request.body : nullptr;
  if (body)
    body->position = 0;
  if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body && body->bytes ? body->bytes->size() : 0));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body && body->bytes ? body->bytes->c_str() : "");
  } else if (request.method == "PUT" || request.method == "PATCH") {
    static const std::string empty;
    if (!body) {
      request.body = Body{&empty, -1, 0, 0, 0};
      body = &*request.body;
    }
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, body);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, body);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body->length));
    if (request.method == "PATCH")
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
    add_header("Expect:");  // no 100-continue round trip
  } else if (request.method == "DELETE") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  exchange.code = curl_easy_perform(h);
  if (exchange.code != CURLE_OK) {
    exchange.error = error_buffer[0] ? error_buffer : curl_easy_strerror(exchange.code);
    while (!exchange.error.empty() && exchange.error.back() == '\n')
      exchange.error.pop_back();
    return exchange;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &exchange.response.status);
  curl_header* previous = nullptr;
  while (curl_header* header = curl_easy_nextheader(h, CURLH_HEADER, -1, previous)) {
    exchange.response.headers.emplace(to_lower(header->name), header->value);
    previous = header;
  }
  return exchange;
}

std::string status_reason(long status) {
  switch (status) {
    case 400:
      return "bad request";
    case 401:
      return "unauthorized";
    case 403:
      return "denied";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 429:
      return "too many requests";
    case 500:
      return "internal server error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return "unexpected answer";
  }
}

bool retriable_status(long status) {
  return status == 429 || (status >= 500 && status != 501 && status != 505);
}

// The registry's explanation of a failed request: its error codes and messages ("unauthorized:
// authentication required"), a token server's "details", or the status.
std::string describe_failure(const Response& response) {
  std::vector<std::string> parts;
  nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
  auto text = [](const nlohmann::json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (json.is_object() && json.contains("errors") && json["errors"].is_array()) {
    for (const nlohmann::json& error : json["errors"]) {
      if (!error.is_object())
        continue;
      std::string code = to_lower(text(error, "code"));
      std::replace(code.begin(), code.end(), '_', ' ');
      std::string message = text(error, "message");
      if (code.empty() || message.empty() || to_lower(message) == code)
        parts.push_back(code.empty() ? message : code);
      else
        parts.push_back(code + ": " + message);
    }
  } else if (json.is_object() && !text(json, "details").empty()) {
    parts.push_back(status_reason(response.status) + ": " + text(json, "details"));
  }
  if (parts.empty()) {
    // A short plain-text body (a proxy's page, a token server's message) is worth showing.
    std::string_view body = trim(response.body);
    body = body.substr(0, body.find('\n'));
    bool printable = !body.empty() && body.size() <= 200 && body.front() != '<' &&
                     json.is_discarded() && std::all_of(body.begin(), body.end(), [](char c) {
                       return static_cast<unsigned char>(c) >= 0x20;
                     });
    std::string reason = status_reason(response.status);
    if (printable)
      parts.push_back(reason + ": " + std::string(body));
    else if (response.status == 401)
      parts.push_back(reason + ": authentication required");  // a HEAD answer has no body
    else
      parts.push_back(reason);
  }
  std::string message = join(parts, "; ") + " (HTTP " + std::to_string(response.status) + ")";
  return response.hint.empty() ? message : message + "; " + response.hint;
}

[[noreturn]] void fail(const Response& response, const std::string& what) {
  throw RegistryError(what, describe_failure(response), static_cast<int>(response.status),
                      retriable_status(response.status));
}

std::chrono::milliseconds retry_delay(int attempt, const std::string& retry_after) {
  int seconds = 0;
  auto [end, ec] =
      std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), seconds);
  if (ec == std::errc() && end == retry_after.data() + retry_after.size() && seconds >= 0)
    return std::chrono::seconds(std::min(seconds, 60));
  return std::chrono::milliseconds(std::min(250L << std::min(attempt, 10), 10'000L));
}

struct Token {
  std::string value;
  Clock::time_point expires;
};

// Runs `work` on every item, `workers` at a time; rethrows the first failure once all stopped
// (after a failure, items not yet started are skipped).
template <typename Item, typename Work>
void for_each_parallel(const std::vector<Item>& items, int workers, const Work& work) {
  if (items.empty())
    return;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::exception_ptr first_error;
  auto run = [&] {
    while (!failed) {
      size_t i = next++;
      if (i >= items.size())
        return;
      try {
        work(items[i]);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!first_error)
          first_error = std::current_exception();
        failed = true;
      }
    }
  };
  {
    size_t count = std::clamp<size_t>(static_cast<size_t>(std::max(workers, 1)), 1, items.size());
    std::vector<std::jthread> threads;
    for (size_t i = 1; i < count; ++i)
      threads.emplace_back(run);
    run();
  }
  if (first_error)
    std::rethrow_exception(first_error);
}

}  // namespace

// ---- RegistryClient -----------------------------------------------------------------------

struct RegistryClient::Impl {
  std::string domain;
  std::string host;  // where requests go
  RegistryOptions options;
  bool insecure;  // TLS not verified and plain HTTP allowed
  HandlePool pool;
  TlsFiles tls;  // used for requests to `host` only (not token servers or redirects)

  std::once_flag base_once;
  std::string base;  // "https://host" or "http://host", set under base_once

  std::mutex mutex;  // guards what follows
  bool credentials_loaded = false;
  std::optional<Credentials> credentials;
  std::optional<Challenge> challenge;   // the kind of auth the registry asked for, once it did
  std::map<std::string, Token> tokens;  // by scope ("repository:x:pull,push ...")

  Impl(std::string domain_, RegistryOptions options_)
      : domain(std::move(domain_)), options(std::move(options_)) {
    host = domain == "docker.io" ? "registry-1.docker.io" : domain;
    // Registries marked insecure in registries.conf count as if the caller had named them.
    for (std::string& r : insecure_registries())
      options.insecure_registries.push_back(std::move(r));
    tls = find_tls_files(options, domain);
    insecure = !options.tls_verify || (is_loopback(host) && tls.ca_bundle.empty()) ||
               std::find(options.insecure_registries.begin(), options.insecure_registries.end(),
                         domain) != options.insecure_registries.end();
  }

  bool verify_for(const std::string& url) const {
    std::string url_host = host_of_url(url);
    if (url_host == host)
      return !insecure;
    return options.tls_verify && !is_loopback(url_host) &&
           std::find(options.insecure_registries.begin(), options.insecure_registries.end(),
                     url_host) == options.insecure_registries.end();
  }

  // "https://host", or "http://host" for an insecure registry that does not speak TLS.
  const std::string& base_url() {
    std::call_once(base_once, [&] {
      base = "https://" + host;
      if (!insecure)
        return;
      Request probe;
      probe.url = base + "/v2/";
      if (perform(pool, probe, "", false, &tls).code == CURLE_OK)
        return;
      probe.url = "http://" + host + "/v2/";
      if (perform(pool, probe, "", false).code == CURLE_OK)
        base = "http://" + host;
    });
    return base;
  }

  std::string repo_url(const std::string& repo, const std::string& rest) {
    return base_url() + "/v2/" + repo + "/" + rest;
  }

  std::optional<Credentials> find_credentials_once() {
    std::lock_guard lock(mutex);
    if (!credentials_loaded) {
      credentials =
          options.credentials ? options.credentials : find_credentials(domain, options.auth_file);
      credentials_loaded = true;
    }
    return credentials;
  }

  void log(const std::string& line) { log_line(options, line); }

  void wait_before_retry(int attempt, const std::string& retry_after, const std::string& what,
                         const std::string& why) {
    auto delay = options.retry_delay ? *options.retry_delay : retry_delay(attempt, retry_after);
    log(what + ": " + why + "; retrying in " + std::to_string(delay.count()) + " ms (" +
        std::to_string(attempt + 1) + " of " + std::to_string(options.retries) + ")");
    std::this_thread::sleep_for(delay);
  }

  // Sends `request`, retrying what is worth retrying, with the registry's auth: `scope` names
  // the access the request needs ("" for none). A token server is asked with `fixed_auth`
  // instead. Returns the final response, whatever its status.
  Response send(Request& request, const std::string& scope, const std::string& what,
                const std::optional<std::string>& fixed_auth = std::nullopt) {
    bool auth_renewed = false;
    for (int attempt = 0;;) {
      std::string authorization = fixed_auth ? *fixed_auth : authorization_for(scope, what);
      Exchange exchange = perform(pool, request, authorization, verify_for(request.url),
                                  host_of_url(request.url) == host ? &tls : nullptr);
      if (exchange.sink_error)
        std::rethrow_exception(exchange.sink_error);
      if (exchange.too_large) {
        throw RegistryError(
            what, "the answer is larger than " + std::to_string(request.max_body) + " bytes", 0,
            false);
      }
      bool can_retry = request.retry && attempt < options.retries && exchange.sunk == 0;
      if (exchange.code != CURLE_OK) {
        if (!can_retry)
          throw RegistryError(what, exchange.error, 0, true);
        wait_before_retry(attempt++, "", what, exchange.error);
        continue;
      }
      Response& response = exchange.response;
      if (response.status == 401 && !fixed_auth && !auth_renewed &&
          renew_auth(response, scope, authorization, what)) {
        auth_renewed = true;
        continue;
      }
      if (retriable_status(response.status) && can_retry) {
        wait_before_retry(attempt++, response.header("retry-after"), what,
                          describe_failure(response));
        continue;
      }
      if (response.status == 401 && !find_credentials_once())
        response.hint = "no credentials for " + domain + " (kiln login, or --creds)";
      return std::move(response);
    }
  }

  std::string authorization_for(const std::string& scope, const std::string& what) {
    Challenge known;
    {
      std::lock_guard lock(mutex);
      if (!challenge)
        return "";
      known = *challenge;
      if (known.scheme == "bearer") {
        auto it = tokens.find(scope);
        if (it != tokens.end() && Clock::now() < it->second.expires)
          return "Bearer " + it->second.value;
      }
    }
    if (known.scheme == "basic") {
      std::optional<Credentials> creds = find_credentials_once();
      return creds ? "Basic " + encode_basic_auth(*creds) : "";
    }
    if (known.scheme != "bearer")
      return "";
    return "Bearer " + fetch_token(known, split_scopes(scope), scope, what);
  }

  static std::vector<std::string> split_scopes(const std::string& scope) {
    std::vector<std::string> scopes;
    for (const std::string& s : split(scope, ' ')) {
      if (!s.empty())
        scopes.push_back(s);
    }
    return scopes;
  }

  // After a 401: learns what the registry wants. True when the request is worth sending again.
  bool renew_auth(const Response& response, const std::string& scope, const std::string& sent,
                  const std::string& what) {
    Challenge offered = parse_challenge(response.header("www-authenticate"));
    if (offered.scheme == "bearer") {
      {
        std::lock_guard lock(mutex);
        challenge = Challenge{offered.scheme, offered.params};
        challenge->params.erase("scope");
        tokens.erase(scope);
      }
      std::vector<std::string> scopes = split_scopes(scope);
      for (const std::string& s : split_scopes(offered.params["scope"])) {
        if (std::find(scopes.begin(), scopes.end(), s) == scopes.end())
          scopes.push_back(s);
      }
      fetch_token(offered, scopes, scope, what);
      return true;
    }
    if (offered.scheme == "basic") {
      {
        std::lock_guard lock(mutex);
        challenge = offered;
      }
      return sent.empty() && find_credentials_once().has_value();
    }
    return false;
  }

  // A token realm is an http(s) URL; on another host than the registry it must be https, unless
  // the registry itself is plain HTTP on loopback (a test or a local mirror with its token
  // server beside it). Credentials go to the realm, so a lying registry must not be able to
  // send them in the clear elsewhere.
  void check_realm(const std::string& realm, const std::string& what) {
    std::string lower = to_lower(realm);
    bool https = starts_with(lower, "https://");
    if (!https && !starts_with(lower, "http://")) {
      throw RegistryError(what,
                          "refused the token realm " + realm + ": only http and https are allowed",
                          401, false);
    }
    std::string realm_host = host_of_url(realm);
    bool local_plain = is_loopback(host) && starts_with(base_url(), "http://");
    if (!https && realm_host != host && !local_plain) {
      throw RegistryError(what,
                          "refused the token realm " + realm + ": a realm on another host than " +
                              host + " must use https",
                          401, false);
    }
  }

  // Gets a token for `scopes` from the challenge's realm and caches it under `key`.
  std::string fetch_token(const Challenge& offered, const std::vector<std::string>& scopes,
                          const std::string& key, const std::string& what) {
    auto param = [&](const char* name) {
      auto it = offered.params.find(name);
      return it == offered.params.end() ? std::string() : it->second;
    };
    std::string realm = param("realm");
    std::string service = param("service");
    if (realm.empty())
      throw RegistryError(what, "the registry asked for a token but named no realm", 401, false);
    check_realm(realm, what);
    std::optional<Credentials> creds = find_credentials_once();
    Request request;
    std::string form;
    std::string authorization;
    if (creds && creds->username == "<token>") {
      // An identity token is an OAuth2 refresh token.
      form = "grant_type=refresh_token&client_id=kiln&service=" + escape(service) +
             "&refresh_token=" + escape(creds->password);
      if (!scopes.empty())
        form += "&scope=" + escape(join(scopes, " "));
      request.method = "POST";
      request.url = realm;
      request.headers.push_back("Content-Type: application/x-www-form-urlencoded");
      request.body = Body{&form, -1, 0, static_cast<int64_t>(form.size()), 0};
    } else {
      request.url =
          realm + (realm.find('?') == std::string::npos ? "?" : "&") + "service=" + escape(service);
      for (const std::string& s : scopes)
        request.url += "&scope=" + escape(s);
      if (creds)
        authorization = "Basic " + encode_basic_auth(*creds);
    }
    Response response = send(request, "", what, authorization);
    if (response.status != 200)
      fail(response, what);
    nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
    std::string token;
    for (const char* field : {"token", "access_token"}) {
      if (json.is_object() && json.contains(field) && json[field].is_string() &&
          !json[field].get<std::string>().empty()) {
        token = json[field].get<std::string>();
        break;
      }
    }
    if (token.empty())
      throw RegistryError(what, "the token server " + realm + " sent no token", 0, false);
    int64_t lifetime = 60;
    if (json.contains("expires_in") && json["expires_in"].is_number_integer())
      lifetime = std::max<int64_t>(json["expires_in"].get<int64_t>(), 60);
    // Renew a little early so that a token does not expire on its way.
    auto expires = Clock::now() + std::chrono::seconds(lifetime - 10);
    std::lock_guard lock(mutex);
    tokens[key] = Token{token, expires};
    return token;
  }

  std::string resolve_location(const Response& response, const std::string& what) {
    std::string location = response.header("location");
    if (location.empty())
      throw RegistryError(what, "the registry sent no upload location", 0, false);
    if (starts_with(location, "http://") || starts_with(location, "https://"))
      return location;
    return base_url() + (starts_with(location, "/") ? "" : "/") + location;
  }

  void upload_once(const std::string& repo, const Descriptor& blob, int fd, int64_t size,
                   const std::string& what) {
    std::string scope = "repository:" + repo + ":pull,push";
    Request start;
    start.method = "POST";
    start.url = repo_url(repo, "blobs/uploads/");
    Response started = send(start, scope, what);
    if (started.status != 202)
      fail(started, what);
    std::string location = resolve_location(started, what);
    Request finish;
    finish.method = "PUT";
    finish.retry = false;
    if (options.chunk_size > 0) {
      for (int64_t offset = 0; offset < size; offset += options.chunk_size) {
        int64_t length = std::min(options.chunk_size, size - offset);
        Request chunk;
        chunk.method = "PATCH";
        chunk.url = location;
        chunk.retry = false;
        chunk.headers = {
            "Content-Type: application/octet-stream",
            "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + length - 1)};
        chunk.body = Body{nullptr, fd, offset, length, 0};
        Response sent = send(chunk, scope, what);
        if (sent.status != 202)
          fail(sent, what);
        location = resolve_location(sent, what);
      }
    } else {
      finish.headers = {"Content-Type: application/octet-stream"};
      finish.body = Body{nullptr, fd, 0, size, 0};
    }
    finish.url = location + (location.find('?') == std::string::npos ? "?" : "&") +
                 "digest=" + escape(blob.digest.str());
    Response done = send(finish, scope, what);
    if (done.status != 201 && done.status != 204)
      fail(done, what);
    std::string stored = done.header("docker-content-digest");
    if (!stored.empty() && stored != blob.digest.str()) {
      throw RegistryError(what, "the registry stored it as " + stored, 0, false);
    }
  }
};

RegistryClient::RegistryClient(std::string domain, RegistryOptions options)
    : impl_(std::make_unique<Impl>(std::move(domain), std::move(options))) {}

RegistryClient::~RegistryClient() = default;

const std::string& RegistryClient::domain() const {
  return impl_->domain;
}

void RegistryClient::ping() {
  std::string what = "checking " + impl_->domain;
  Request request;
  request.url = impl_->base_url() + "/v2/";
  Response response = impl_->send(request, "", what);
  if (response.status != 200)
    fail(response, what);
}

RegistryClient::Manifest RegistryClient::get_manifest(const std::string& repo,
                                                      const std::string& reference) {
  std::optional<Digest> wanted = Digest::try_parse(reference);
  std::string what =
      "pulling manifest " + impl_->domain + "/" + repo + (wanted ? "@" : ":") + reference;
  if (wanted && wanted->algorithm() != "sha256")
    throw RegistryError(what, "only sha256 digests are supported", 0, false);
  Request request;
  request.url = impl_->repo_url(repo, "manifests/" + reference);
  request.headers = {manifest_accept()};
  request.max_body = kMaxManifestBytes;
  Response response = impl_->send(request, "repository:" + repo + ":pull", what);
  if (response.status != 200)
    fail(response, what);
  Manifest manifest;
  manifest.bytes = std::move(response.body);
  manifest.digest = sha256_of(manifest.bytes);
  if (wanted && *wanted != manifest.digest) {
    throw RegistryError(
        what, "content does not match its digest (got " + manifest.digest.str() + ")", 0, false);
  }
  nlohmann::json json = nlohmann::json::parse(manifest.bytes, nullptr, false);
  if (!json.is_object())
    throw RegistryError(what, "the manifest is not a JSON object", 0, false);
  if (json.contains("mediaType") && json["mediaType"].is_string())
    manifest.media_type = json["mediaType"].get<std::string>();
  if (manifest.media_type.empty())
    manifest.media_type = strip_parameters(response.header("content-type"));
  if (manifest.media_type.empty() || manifest.media_type == "application/json") {
    // An OCI document may leave its type out; its shape tells.
    manifest.media_type =
        json.contains("manifests") ? media_type::kOciIndex : media_type::kOciManifest;
  }
  return manifest;
}

std::optional<Index> RegistryClient::referrers(const std::string& repo, const Digest& subject) {
  std::string what = "listing the referrers of " + impl_->domain + "/" + repo + "@" + subject.str();
  Request request;
  request.url = impl_->repo_url(repo, "referrers/" + subject.str());
  request.headers = {"Accept: " + std::string(media_type::kOciIndex)};
  request.max_body = kMaxManifestBytes;
  Response response = impl_->send(request, "repository:" + repo + ":pull", what);
  // A registry without the API answers 404 (distribution 2.x: no such route).
  if (response.status == 404)
    return std::nullopt;
  if (response.status != 200)
    fail(response, what);
  if (strip_parameters(response.header("content-type")) != media_type::kOciIndex)
    return std::nullopt;  // a 200 from something that is not the API (a catch-all page)
  try {
    return parse_index(response.body);
  } catch (const Error& e) {
    throw RegistryError(what, e.what(), 0, false);
  }
}

std::optional<Descriptor> RegistryClient::head_manifest(const std::string& repo,
                                                        const std::string& reference) {
  std::string what = "checking manifest " + impl_->domain + "/" + repo +
                     (Digest::try_parse(reference) ? "@" : ":") + reference;
  Request request;
  request.method = "HEAD";
  request.url = impl_->repo_url(repo, "manifests/" + reference);
  request.headers = {manifest_accept()};
  Response response = impl_->send(request, "repository:" + repo + ":pull", what);
  if (response.status == 404)
    return std::nullopt;
  if (response.status != 200)
    fail(response, what);
  std::optional<Digest> digest = Digest::try_parse(response.header("docker-content-digest"));
  std::string media = strip_parameters(response.header("content-type"));
  int64_t size = -1;
  std::string length = response.header("content-length");
  std::from_chars(length.data(), length.data() + length.size(), size);
  if (!digest || media.empty() || size < 0) {
    // Not every registry says it all in a HEAD answer.
    Manifest manifest = get_manifest(repo, reference);
    return Descriptor{manifest.media_type,
                      manifest.digest,
                      static_cast<int64_t>(manifest.bytes.size()),
                      {},
                      {},
                      {},
                      {}};
  }
  return Descriptor{media, *digest, size, {}, {}, {}, {}};
}

void RegistryClient::get_blob(const std::string& repo, const Descriptor& blob, ByteSink& sink) {
  std::string what = "pulling blob " + blob.digest.str() + " of " + impl_->domain + "/" + repo;
  if (blob.digest.algorithm() != "sha256")
    throw RegistryError(what, "only sha256 digests are supported", 0, false);
  Sha256 hash;
  int64_t received = 0;
  std::string broke_off;  // why the last attempt ended early
  for (int resumes = 0;; ++resumes) {
    Request request;
    request.url = impl_->repo_url(repo, "blobs/" + blob.digest.str());
    request.follow_redirects = true;
    int64_t resume_at = received;
    if (resume_at > 0)
      request.headers = {"Range: bytes=" + std::to_string(resume_at) + "-"};
    request.sink = [&, resume_at](long status, const char* data, size_t size) {
      if (resume_at > 0 && status != 206) {
        throw RegistryError(what,
                            "the download broke off after " + std::to_string(resume_at) +
                                " bytes (" + broke_off +
                                ") and the registry cannot resume it (it ignored Range)",
                            0, false);
      }
      if (received + static_cast<int64_t>(size) > blob.size) {
        throw RegistryError(what,
                            "the registry sent more than the " + std::to_string(blob.size) +
                                " bytes the descriptor says",
                            0, false);
      }
      hash.update(data, size);
      sink.write(data, size);
      received += static_cast<int64_t>(size);
    };
    try {
      Response response = impl_->send(request, "repository:" + repo + ":pull", what);
      if (response.status != 200 && response.status != 206)
        fail(response, what);
      break;
    } catch (const RegistryError& e) {
      // send() retried what broke before any byte came; a break-off later resumes here.
      if (!e.retriable() || received == 0 || resumes >= impl_->options.retries)
        throw;
      broke_off = e.cause();
      impl_->wait_before_retry(resumes, "", what,
                               e.cause() + " after " + std::to_string(received) + " bytes");
    }
  }
  if (received != blob.size) {
    throw RegistryError(what,
                        "got " + std::to_string(received) + " bytes, the descriptor says " +
                            std::to_string(blob.size),
                        0, false);
  }
  Digest got = hash.finish();
  if (got != blob.digest) {
    throw RegistryError(what, "content does not match its digest (got " + got.str() + ")", 0,
                        false);
  }
}

bool RegistryClient::blob_exists(const std::string& repo, const Digest& digest) {
  std::string what = "checking blob " + digest.str() + " in " + impl_->domain + "/" + repo;
  Request request;
  request.method = "HEAD";
  request.url = impl_->repo_url(repo, "blobs/" + digest.str());
  request.follow_redirects = true;
  Response response = impl_->send(request, "repository:" + repo + ":pull", what);
  if (response.status == 200)
    return true;
  if (response.status == 404)
    return false;
  fail(response, what);
}

bool RegistryClient::mount_blob(const std::string& repo, const Digest& digest,
                                const std::string& from_repo) {
  std::string what = "mounting blob " + digest.str() + " from " + from_repo + " into " +
                     impl_->domain + "/" + repo;
  Request request;
  request.method = "POST";
  request.url = impl_->repo_url(
      repo, "blobs/uploads/?mount=" + escape(digest.str()) + "&from=" + escape(from_repo));
  std::string scope = "repository:" + repo + ":pull,push repository:" + from_repo + ":pull";
  Response response = impl_->send(request, scope, what);
  if (response.status == 201)
    return true;
  if (response.status != 202)
    fail(response, what);
  // The registry opened an upload session instead; it is not needed.
  if (!response.header("location").empty()) {
    Request cancel;
    cancel.method = "DELETE";
    cancel.url = impl_->resolve_location(response, what);
    cancel.retry = false;
    try {
      impl_->send(cancel, scope, what);
    } catch (const RegistryError&) {
      // An abandoned session expires on its own.
    }
  }
  return false;
}

void RegistryClient::put_blob(const std::string& repo, const Descriptor& blob,
                              const fs::path& file) {
  std::string what = "pushing blob " + blob.digest.str() + " to " + impl_->domain + "/" + repo;
  UniqueFd fd = open_or_throw(file, O_RDONLY);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw Error("stat " + file.string() + ": " + std::strerror(errno));
  if (st.st_size != blob.size) {
    throw Error(what + ": " + file.string() + " has " + std::to_string(st.st_size) +
                " bytes, the descriptor says " + std::to_string(blob.size));
  }
  for (int attempt = 0;; ++attempt) {
    try {
      impl_->upload_once(repo, blob, fd.get(), blob.size, what);
      return;
    } catch (const RegistryError& e) {
      if (!e.retriable() || attempt >= impl_->options.retries)
        throw;
      impl_->wait_before_retry(attempt, "", what, e.cause() + "; starting again");
    }
  }
}

Digest RegistryClient::put_manifest(const std::string& repo, const std::string& reference,
                                    const std::string& media_type, const std::string& bytes) {
  std::string what = "pushing manifest " + impl_->domain + "/" + repo +
                     (Digest::try_parse(reference) ? "@" : ":") + reference;
  Request request;
  request.method = "PUT";
  request.url = impl_->repo_url(repo, "manifests/" + reference);
  request.headers = {"Content-Type: " + media_type};
  request.body = Body{&bytes, -1, 0, static_cast<int64_t>(bytes.size()), 0};
  Response response = impl_->send(request, "repository:" + repo + ":pull,push", what);
  if (response.status / 100 != 2)
    fail(response, what);
  return sha256_of(bytes);
}

std::vector<std::string> RegistryClient::list_tags(const std::string& repo) {
  std::string what = "listing tags of " + impl_->domain + "/" + repo;
  std::vector<std::string> tags;
  std::string url = impl_->repo_url(repo, "tags/list");
  while (!url.empty()) {
    Request request;
    request.url = url;
    Response response = impl_->send(request, "repository:" + repo + ":pull", what);
    if (response.status != 200)
      fail(response, what);
    nlohmann::json json = nlohmann::json::parse(response.body, nullptr, false);
    if (!json.is_object())
      throw RegistryError(what, "the answer is not a JSON object", 0, false);
    if (json.contains("tags") && json["tags"].is_array()) {
      for (const nlohmann::json& tag : json["tags"]) {
        if (tag.is_string())
          tags.push_back(tag.get<std::string>());
      }
    }
    // Pagination: Link: </v2/x/tags/list?last=a&n=100>; rel="next"
    url.clear();
    std::string link = response.header("link");
    size_t open = link.find('<');
    size_t close = link.find('>');
    if (open != std::string::npos && close != std::string::npos && close > open &&
        link.find("rel=\"next\"") != std::string::npos) {
      std::string next = link.substr(open + 1, close - open - 1);
      url = starts_with(next, "http") ? next : impl_->base_url() + next;
    }
  }
  return tags;
}

// ---- pull and push --------------------------------------------------------------------------

namespace {

// Downloads a blob into the store unless it is there; nothing unverified becomes visible.
void fetch_blob(RegistryClient& client, Store& store, const std::string& repo,
                const Descriptor& blob, const RegistryOptions& options) {
  if (store.has_blob(blob.digest))
    return;
  std::unique_ptr<BlobWriter> writer = store.begin_blob();
  client.get_blob(repo, blob, *writer);
  writer->commit(blob.digest);
  log_line(options,
           "pulled blob " + blob.digest.str() + " (" + std::to_string(blob.size) + " bytes)");
}

class Pusher {
 public:
  Pusher(Store& store, RegistryClient& client, const Reference& ref,
         const std::vector<std::string>& mount_from, const RegistryOptions& options)
      : store_(store), client_(client), ref_(ref), mount_from_(mount_from), options_(options) {}

  // Pushes what `manifest` references, then the manifest itself under `reference`.
  void push_manifest(const Descriptor& manifest, const std::string& reference, int depth = 0) {
    if (!store_.has_blob(manifest.digest)) {
      throw Error("pushing " + ref_.familiar() + ": manifest " + manifest.digest.str() +
                  " is not in the local store");
    }
    std::string bytes = store_.read_blob(manifest.digest);
    if (media_type::is_index(manifest.media_type)) {
      if (depth >= kMaxIndexDepth)
        throw Error("pushing " + ref_.familiar() + ": indexes are nested too deep");
      for (const Descriptor& child : parse_index(bytes).manifests)
        push_manifest(child, child.digest.str(), depth + 1);
    } else if (media_type::is_manifest(manifest.media_type)) {
      Manifest parsed = parse_manifest(bytes);
      std::vector<Descriptor> blobs = {parsed.config};
      blobs.insert(blobs.end(), parsed.layers.begin(), parsed.layers.end());
      push_blobs(blobs);
    } else {
      throw Error("pushing " + ref_.familiar() + ": cannot push " + manifest.digest.str() +
                  " of media type " + quote(manifest.media_type));
    }
    client_.put_manifest(ref_.path, reference, manifest.media_type, bytes);
    log_line(options_, "pushed manifest " + manifest.digest.str());
  }

 private:
  void push_blobs(const std::vector<Descriptor>& blobs) {
    std::vector<Descriptor> todo;
    for (const Descriptor& blob : blobs) {
      // Foreign layers live elsewhere (their urls); registries do not expect them.
      if (!blob.urls.empty() && !store_.has_blob(blob.digest))
        continue;
      if (done_.insert(blob.digest).second)
        todo.push_back(blob);
    }
    for_each_parallel(todo, options_.parallel_downloads,
                      [&](const Descriptor& blob) { push_blob(blob); });
  }

  void push_blob(const Descriptor& blob) {
    const std::string& repo = ref_.path;
    if (!store_.has_blob(blob.digest)) {
      throw Error("pushing " + ref_.familiar() + ": blob " + blob.digest.str() +
                  " is not in the local store");
    }
    if (client_.blob_exists(repo, blob.digest)) {
      log_line(options_, "blob " + blob.digest.str() + " already in " + repo);
      return;
    }
    for (const std::string& from : mount_from_) {
      if (from != repo && client_.mount_blob(repo, blob.digest, from)) {
        log_line(options_, "mounted blob " + blob.digest.str() + " from " + from);
        return;
      }
    }
    client_.put_blob(repo, blob, store_.blob_path(blob.digest));
    log_line(options_,
             "pushed blob " + blob.digest.str() + " (" + std::to_string(blob.size) + " bytes)");
  }

  Store& store_;
  RegistryClient& client_;
  const Reference& ref_;
  const std::vector<std::string>& mount_from_;
  const RegistryOptions& options_;
  std::set<Digest> done_;  // blobs pushed (or being pushed) already
};

}  // namespace

namespace {

// One source of a pull (pull_sources): `source` is where the bytes come from, `ref` what the user
// named (the tag the image gets in the store).
ResolvedImage pull_from(Store& store, const Reference& source, const Reference& ref,
                        const Platform& platform, const RegistryOptions& options) {
  RegistryClient client(source.domain, options);
  std::string what = "pulling " + source.familiar();
  RegistryClient::Manifest document =
      client.get_manifest(source.path, source.digest ? source.digest->str() : source.tag);
  Descriptor manifest{document.media_type,
                      document.digest,
                      static_cast<int64_t>(document.bytes.size()),
                      {},
                      {},
                      {},
                      {}};
  for (int depth = 0; media_type::is_index(manifest.media_type); ++depth) {
    if (depth >= kMaxIndexDepth)
      throw Error(what + ": indexes are nested too deep");
    Index index = parse_index(document.bytes);
    std::optional<Descriptor> chosen = find_platform_manifest(index, platform);
    if (!chosen) {
      throw Error(what + ": no image for platform " + platform.to_string() +
                  " (it has: " + platforms_in(index) + ")");
    }
    document = client.get_manifest(source.path, chosen->digest.str());
    manifest = *chosen;
    manifest.annotations.clear();
  }
  if (!media_type::is_manifest(manifest.media_type)) {
    throw Error(what + ": unsupported manifest type " + quote(manifest.media_type));
  }
  Manifest parsed = parse_manifest(document.bytes);
  fetch_blob(client, store, source.path, parsed.config, options);
  // A config that is not one (its digest can be right) must not become a tagged image.
  ImageConfig config;
  try {
    config = parse_image_config(store.read_blob(parsed.config.digest));
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  for_each_parallel(parsed.layers, options.parallel_downloads, [&](const Descriptor& layer) {
    fetch_blob(client, store, source.path, layer, options);
  });
  // Stored last: a manifest in the store always has its blobs.
  store.put_blob(document.bytes);
  if (!ref.tag.empty()) {
    Reference name = ref;
    name.digest.reset();
    store.tag(manifest, name.familiar());
  }
  ResolvedImage image;
  image.source = ref.familiar();
  image.manifest = manifest;
  image.parsed = std::move(parsed);
  image.config = std::move(config);
  return image;
}

}  // namespace

ResolvedImage pull_image(Store& store, const Reference& ref, const Platform& platform,
                         const RegistryOptions& options) {
  // registries.conf: mirrors first (as allowed), then the registry (its location rewrite
  // applied); a blocked registry throws here.
  std::vector<PullSource> sources = pull_sources(load_registries_conf(), ref);
  std::string mirror_failures;
  for (const PullSource& source : sources) {
    RegistryOptions at = options;
    if (source.insecure)
      at.insecure_registries.push_back(source.ref.domain);
    if (source.mirror || source.ref.name() != ref.name())
      log_line(options, "Pulling " + ref.familiar() + " from " + source.ref.familiar() +
                            (source.mirror ? " (a mirror)" : ""));
    if (!source.mirror)
      return pull_from(store, source.ref, ref, platform, at);
    try {
      return pull_from(store, source.ref, ref, platform, at);
    } catch (const Error& e) {
      log_line(options, std::string("mirror failed: ") + e.what());
      mirror_failures += std::string("; mirror ") + source.ref.domain + ": " + e.what();
    }
  }
  throw Error("pulling " + ref.familiar() + ": no source left" + mirror_failures);
}

Digest push_image(Store& store, const Descriptor& top, const Reference& ref,
                  const RegistryOptions& options, const std::vector<std::string>& mount_from) {
  if (ref.digest && *ref.digest != top.digest) {
    throw Error("pushing to " + ref.familiar() + ": the image's digest is " + top.digest.str());
  }
  RegistryClient client(ref.domain, options);
  Pusher pusher(store, client, ref, mount_from, options);
  pusher.push_manifest(top, ref.tag.empty() ? top.digest.str() : ref.tag);
  return top.digest;
}

std::string push_failure_advice(const RegistryError& error, const Reference& ref) {
  switch (error.http_status()) {
    case 401:
    case 403:
      return "; check the credentials for " + ref.domain + " (kiln login " + ref.domain +
             ", --creds or --authfile) and that they may push to " + ref.path;
    case 404:
      return "; check the repository name " + ref.path;
    case 0:
      return "; check that " + ref.domain +
             " is reachable and speaks HTTPS (--tls-verify=false for a plain-HTTP registry)";
    default:
      return "";
  }
}

}  // namespace kiln::oci
