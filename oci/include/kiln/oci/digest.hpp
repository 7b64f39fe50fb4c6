// Content digests ("sha256:<64 hex>") and streaming SHA-256.
//
// Everything kiln stores is addressed by the SHA-256 of its bytes (the OCI image spec's
// digest). Hashing is streaming: feed any number of chunks, then finish once.
#pragma once

#include <compare>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::oci {

class Digest {
 public:
  Digest() = default;  // empty; valid() is false

  // Parses "algorithm:hex". Only sha256 (64 lower-case hex digits) and sha512 (128) are accepted,
  // as the OCI image spec registers them. Throws kiln::Error naming the text otherwise.
  static Digest parse(std::string_view text);
  static std::optional<Digest> try_parse(std::string_view text);

  bool valid() const { return !hex_.empty(); }
  const std::string& algorithm() const { return algorithm_; }
  const std::string& hex() const { return hex_; }
  std::string str() const { return valid() ? algorithm_ + ":" + hex_ : std::string(); }
  // First 12 hex digits, as image IDs are shown.
  std::string short_id() const { return hex_.substr(0, 12); }

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;

 private:
  Digest(std::string algorithm, std::string hex)
      : algorithm_(std::move(algorithm)), hex_(std::move(hex)) {}
  std::string algorithm_;
  std::string hex_;
};

// Streaming SHA-256 over OpenSSL's EVP interface. Not thread-safe; one per stream. Movable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // The digest of everything fed so far. The hasher must not be used afterwards.
  Digest finish();

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

Digest sha256_of(std::string_view bytes);
// Streams the file through SHA-256. Throws kiln::Error naming the path when it cannot be read.
Digest sha256_of_file(const std::filesystem::path& path);

}  // namespace kiln::oci
