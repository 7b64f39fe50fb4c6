#include "kiln/oci/digest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace {

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::optional<Digest> Digest::try_parse(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  std::string_view algorithm = text.substr(0, colon);
  std::string_view hex = text.substr(colon + 1);
  size_t expected = algorithm == "sha256" ? 64 : algorithm == "sha512" ? 128 : 0;
  if (expected == 0 || hex.size() != expected || !is_lower_hex(hex))
    return std::nullopt;
  return Digest(std::string(algorithm), std::string(hex));
}

Digest Digest::parse(std::string_view text) {
  if (auto d = try_parse(text))
    return *d;
  throw Error("invalid digest " + quote(text) + ": expected sha256:<64 lower-case hex digits>");
}

struct Sha256::Context {
  EVP_MD_CTX* md = nullptr;
  ~Context() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Context>()) {
  ctx_->md = EVP_MD_CTX_new();
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1) {
    throw Error("sha256: cannot initialise OpenSSL digest context");
  }
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t size) {
  if (size != 0 && EVP_DigestUpdate(ctx_->md, data, size) != 1) {
    throw Error("sha256: OpenSSL digest update failed");
  }
}

Digest Sha256::finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_->md, out, &len) != 1)
    throw Error("sha256: OpenSSL digest failed");
  static const char* const kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 0xF];
  }
  return Digest::parse("sha256:" + hex);
}

Digest sha256_of(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

Digest sha256_of_file(const std::filesystem::path& path) {
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  Sha256 h;
  read_chunks(fd.get(), path.string(),
              [&](const char* data, size_t size) { h.update(data, size); });
  return h.finish();
}

}  // namespace kiln::oci
