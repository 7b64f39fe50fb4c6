#include "kiln/exporter/signing.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <set>

#include "kiln/base/base64.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/referrers.hpp"
#include "signing_internal.hpp"

namespace kiln::exporter {
namespace fs = std::filesystem;

void detail::EvpPkeyFree::operator()(evp_pkey_st* key) const {
  EVP_PKEY_free(key);
}

namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// "WHAT: OpenSSL's reason", emptying OpenSSL's error queue.
Error openssl_error(const std::string& what) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return Error(what);
  char reason[256];
  ERR_error_string_n(code, reason, sizeof reason);
  return Error(what + ": " + reason);
}

BioPtr memory_bio(std::string_view bytes) {
  if (bytes.size() > INT_MAX)
    throw Error("key file too large");
  BioPtr bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  if (!bio)
    throw openssl_error("BIO_new_mem_buf");
  return bio;
}

// Runs `write` on a memory BIO and returns what it wrote.
template <typename Write>
std::string write_to_string(const std::string& what, const Write& write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1)
    throw openssl_error(what);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// The signature a cosign signature annotation carries (base64 of its ASN.1 DER); nullopt when the
// annotation is not base64 of anything.
std::optional<std::string> decode_signature(std::string_view annotation) {
  try {
    std::string der = base64_decode(annotation);
    if (!der.empty())
      return der;
  } catch (const Error&) {
  }
  return std::nullopt;
}

// Echo off on a terminal for as long as it lives.
class EchoOff {
 public:
  explicit EchoOff(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0)
      return;
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    active_ = ::tcsetattr(fd_, TCSAFLUSH, &quiet) == 0;
  }
  ~EchoOff() {
    if (active_)
      ::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  EchoOff(const EchoOff&) = delete;
  EchoOff& operator=(const EchoOff&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

std::string ask_on_terminal(int tty, const std::string& question) {
  write_all(tty, question.data(), question.size(), "/dev/tty");
  std::string line;
  {
    EchoOff quiet(tty);
    char c = 0;
    for (;;) {
      ssize_t n = ::read(tty, &c, 1);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0 || c == '\n')
        break;
      line.push_back(c);
    }
  }
  write_all(tty, "\n", 1, "/dev/tty");
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  return line;
}

// Asks for a key's password at most once, from inside OpenSSL's password callback (which must not
// throw: the exception waits here until OpenSSL has returned).
struct PasswordRequest {
  std::string purpose;
  std::optional<std::string> password;
  std::exception_ptr error;
};

int password_callback(char* buf, int size, int /*rwflag*/, void* user) {
  auto* request = static_cast<PasswordRequest*>(user);
  try {
    if (!request->password)
      request->password = key_password(request->purpose, false);
  } catch (...) {
    request->error = std::current_exception();
    return -1;
  }
  const std::string& password = *request->password;
  if (password.size() > static_cast<size_t>(size))
    return -1;
  std::memcpy(buf, password.data(), password.size());
  return static_cast<int>(password.size());
}

// Throws unless `key` is an EC key on P-256.
void require_p256(EVP_PKEY* key, const fs::path& file) {
  if (!EVP_PKEY_is_a(key, "EC")) {
    const char* type = EVP_PKEY_get0_type_name(key);
    throw Error(file.string() + " holds " + (type ? std::string(type) : "an unknown kind of") +
                " key; kiln signs and verifies with ECDSA P-256 keys (kiln key generate)");
  }
  char group[80] = {};
  size_t length = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1 ||
      OBJ_txt2nid(group) != NID_X9_62_prime256v1) {
    throw Error(file.string() + " holds an EC key on curve " + quote(group) +
                "; kiln signs and verifies with ECDSA P-256 keys");
  }
}

// Writes `bytes` to `path` with `mode` (exactly: umask does not apply) through a temporary file
// beside it. Without `overwrite`, an existing file is left alone and kiln::Error says so.
void write_new_file(const fs::path& path, std::string_view bytes, mode_t mode, bool overwrite) {
  fs::path temp = path.string() + ".kiln-tmp-" + std::to_string(::getpid());
  {
    UniqueFd fd = open_or_throw(temp, O_WRONLY | O_CREAT | O_EXCL, mode);
    try {
      if (::fchmod(fd.get(), mode) != 0)
        throw Error("chmod " + temp.string() + ": " + std::strerror(errno));
      write_all(fd.get(), bytes.data(), bytes.size(), temp.string());
      if (::fsync(fd.get()) != 0)
        throw Error("fsync " + temp.string() + ": " + std::strerror(errno));
    } catch (...) {
      ::unlink(temp.c_str());
      throw;
    }
  }
  // link(2) fails when the name exists, so a file created meanwhile is not replaced either.
  int rc = overwrite ? ::rename(temp.c_str(), path.c_str()) : ::link(temp.c_str(), path.c_str());
  int err = errno;
  ::unlink(temp.c_str());
  if (rc != 0) {
    throw Error(err == EEXIST ? path.string() + " already exists"
                              : "write " + path.string() + ": " + std::strerror(err));
  }
}

// A JSON object's member by name, matched as Go's encoding/json matches struct fields (exactly,
// else ignoring case): cosign reads payloads that way, and the spec's own example says
// "Docker-manifest-digest".
const nlohmann::json* member(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object())
    return nullptr;
  if (auto it = object.find(key); it != object.end())
    return &*it;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (iequals(it.key(), key))
      return &*it;
  }
  return nullptr;
}

std::string string_member(const nlohmann::json& object, std::string_view key) {
  const nlohmann::json* value = member(object, key);
  return value && value->is_string() ? value->get<std::string>() : std::string();
}

}  // namespace

namespace detail {

// cosign's signature image config: no platform, one diff ID (the payload digest: payloads are not
// compressed) and one history entry per layer. The zero time keeps the bytes a function of the
// layers.
std::string signature_config(const std::vector<oci::Descriptor>& layers) {
  constexpr const char* kZeroTime = "0001-01-01T00:00:00Z";
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  nlohmann::ordered_json diff_ids = nlohmann::ordered_json::array();
  for (const oci::Descriptor& layer : layers) {
    history.push_back({{"created", kZeroTime}});
    diff_ids.push_back(layer.digest.str());
  }
  nlohmann::ordered_json config;
  config["architecture"] = "";
  config["created"] = kZeroTime;
  config["history"] = std::move(history);
  config["os"] = "";
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", std::move(diff_ids)}};
  config["config"] = nlohmann::ordered_json::object();
  return config.dump();
}

oci::Manifest parse_tagged_manifest(const std::string& bytes, const SignatureTarget& target,
                                    const std::string& tag) {
  try {
    return oci::parse_manifest(bytes);
  } catch (const Error& e) {
    throw Error("signature manifest " + tag + " of " + target.name() + ": " + e.what());
  }
}

oci::Descriptor blob_descriptor(const char* media_type, std::string_view bytes) {
  return {media_type, oci::sha256_of(bytes), static_cast<int64_t>(bytes.size()), {}, {}, {}, {}};
}

oci::Manifest artifact_manifest(const std::string& artifact_type, const oci::Descriptor& subject,
                                const oci::Descriptor& layer) {
  oci::Manifest manifest;
  manifest.media_type = oci::media_type::kOciManifest;
  manifest.artifact_type = artifact_type;
  manifest.config = blob_descriptor(oci::media_type::kOciEmpty, "{}");
  manifest.layers.push_back(layer);
  oci::Descriptor about;
  about.media_type = subject.media_type;
  about.digest = subject.digest;
  about.size = subject.size;
  manifest.subject = about;
  return manifest;
}

std::vector<oci::Descriptor> referrer_layers(SignatureTarget& target, const oci::Digest& subject,
                                             const std::string& artifact_type) {
  std::vector<oci::Descriptor> layers;
  for (const oci::Descriptor& r : target.referrers(subject)) {
    if (r.artifact_type != artifact_type)
      continue;
    oci::Manifest m = parse_tagged_manifest(target.read(r), target, r.digest.str());
    layers.insert(layers.end(), m.layers.begin(), m.layers.end());
  }
  return layers;
}

}  // namespace detail

namespace {

using detail::blob_descriptor;
using detail::parse_tagged_manifest;
using detail::signature_config;

// Why `layer` is not a good signature of `subject`; empty when it is one. On success, `optional`
// receives the payload's optional section.
std::string check_layer(SignatureTarget& target, const oci::Descriptor& layer,
                        const oci::Digest& subject, const PublicKey& key,
                        const std::string& key_name, std::string& optional) {
  if (layer.media_type != kSimpleSigningMediaType)
    return "the layer is " + layer.media_type + ", not a simple-signing payload";
  auto annotation = layer.annotations.find(kSignatureAnnotation);
  if (annotation == layer.annotations.end())
    return std::string("the layer has no ") + kSignatureAnnotation + " annotation";
  std::optional<std::string> signature = decode_signature(annotation->second);
  if (!signature)
    return "the signature annotation is not base64";
  std::string payload;
  try {
    payload = target.read(layer);
  } catch (const Error& e) {
    return std::string("cannot read the payload: ") + e.what();
  }
  if (oci::sha256_of(payload) != layer.digest)
    return "the payload does not match the layer digest " + layer.digest.str();
  if (!key.verifies(payload, *signature))
    return "signature does not verify with " + key_name;

  nlohmann::json document = nlohmann::json::parse(payload, nullptr, false);
  const nlohmann::json* critical = member(document, "critical");
  if (!critical || !critical->is_object())
    return "the payload is not a simple-signing document (no \"critical\" object)";
  std::string type = string_member(*critical, "type");
  if (type != kCosignSignatureType) {
    return "the payload's type is " + quote(type) + ", not " + quote(kCosignSignatureType);
  }
  const nlohmann::json* image = member(*critical, "image");
  std::string digest = image ? string_member(*image, "docker-manifest-digest") : std::string();
  if (digest != subject.str()) {
    return "payload is for " + (digest.empty() ? std::string("no digest") : digest) + ", not " +
           subject.str();
  }
  const nlohmann::json* identity = member(*critical, "identity");
  std::string reference = identity ? string_member(*identity, "docker-reference") : std::string();
  std::string repository = target.repository();
  if (!reference.empty() && !repository.empty()) {
    std::optional<oci::Reference> parsed = oci::try_parse_reference(reference);
    std::string named = parsed ? parsed->name() : reference;
    if (named != repository)
      return "payload is for repository " + reference + ", not " + repository;
  }
  const nlohmann::json* extra = member(document, "optional");
  optional = extra ? extra->dump() : "null";
  return {};
}

class RegistryTarget : public SignatureTarget {
 public:
  RegistryTarget(oci::Reference ref, const oci::RegistryOptions& options)
      : ref_(std::move(ref)), name_(ref_.familiar()), client_(ref_.domain, options) {}

  const std::string& name() const override { return name_; }
  std::string repository() const override { return ref_.name(); }

  oci::Descriptor resolve() override {
    std::string reference = ref_.digest ? ref_.digest->str() : ref_.tag;
    std::optional<oci::Descriptor> found = client_.head_manifest(ref_.path, reference);
    if (!found)
      throw Error("image " + name_ + " is not in the registry");
    if (ref_.digest && found->digest != *ref_.digest) {
      throw Error("image " + name_ + ": the registry answered with " + found->digest.str());
    }
    return *found;
  }

  std::string read(const oci::Descriptor& descriptor) override {
    if (oci::media_type::is_manifest(descriptor.media_type) ||
        oci::media_type::is_index(descriptor.media_type)) {
      return client_.get_manifest(ref_.path, descriptor.digest.str()).bytes;
    }
    StringSink sink;
    client_.get_blob(ref_.path, descriptor, sink);
    return std::move(sink.bytes);
  }

  std::optional<std::string> read_tagged_manifest(const std::string& tag) override {
    try {
      return client_.get_manifest(ref_.path, tag).bytes;
    } catch (const oci::RegistryError& e) {
      if (e.http_status() == 404)
        return std::nullopt;
      throw;
    }
  }

  void write_tagged_manifest(const std::string& tag,
                             const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                             const std::string& manifest) override {
    for (const auto& [descriptor, bytes] : blobs) {
      if (client_.blob_exists(ref_.path, descriptor.digest))
        continue;
      TempDir dir;
      fs::path file = dir.path() / "blob";
      write_new_file(file, bytes, 0600, false);
      client_.put_blob(ref_.path, descriptor, file);
    }
    client_.put_manifest(ref_.path, tag, oci::media_type::kOciManifest, manifest);
  }

  void write_referrer(const oci::Digest& subject,
                      const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                      const std::string& manifest) override {
    oci::Descriptor d = blob_descriptor(oci::media_type::kOciManifest, manifest);
    write_tagged_manifest(d.digest.str(), blobs, manifest);  // by digest
    oci::publish_registry_referrer(client_, ref_.path, subject,
                                   oci::referrer_descriptor(d, oci::parse_manifest(manifest)));
  }

  std::vector<oci::Descriptor> referrers(const oci::Digest& subject) override {
    return oci::registry_referrers(client_, ref_.path, subject);
  }

 private:
  oci::Reference ref_;
  std::string name_;
  oci::RegistryClient client_;
};

class LayoutTarget : public SignatureTarget {
 public:
  LayoutTarget(fs::path dir, std::string tag)
      : dir_(std::move(dir)),
        tag_(std::move(tag)),
        name_("oci:" + dir_.string() + (tag_.empty() ? "" : ":" + tag_)) {}

  const std::string& name() const override { return name_; }
  std::string repository() const override { return {}; }

  oci::Descriptor resolve() override {
    oci::Index index = read_index();
    std::vector<const oci::Descriptor*> images;
    std::vector<std::string> names;
    for (const oci::Descriptor& d : index.manifests) {
      std::string name = ref_name(d);
      if (is_signature_tag(name))
        continue;
      if (!tag_.empty() && name == tag_)
        return d;
      images.push_back(&d);
      if (!name.empty())
        names.push_back(name);
    }
    if (tag_.empty() && images.size() == 1)
      return *images.front();
    if (tag_.empty()) {
      throw Error(name_ + ": the layout holds " + std::to_string(images.size()) +
                  " images; name one as " + name_ + ":TAG (tags: " + join(names, ", ") + ")");
    }
    throw Error(name_ + ": no image tagged " + quote(tag_) + " in " + dir_.string() +
                " (tags: " + join(names, ", ") + ")");
  }

  std::string read(const oci::Descriptor& descriptor) override {
    std::string bytes = read_file(blob_path(descriptor.digest));
    if (descriptor.digest.algorithm() == "sha256" && oci::sha256_of(bytes) != descriptor.digest) {
      throw Error(name_ + ": blob " + descriptor.digest.str() + " does not match its digest");
    }
    return bytes;
  }

  std::optional<std::string> read_tagged_manifest(const std::string& tag) override {
    for (const oci::Descriptor& d : read_index().manifests) {
      if (ref_name(d) == tag)
        return read(d);
    }
    return std::nullopt;
  }

  void write_tagged_manifest(const std::string& tag,
                             const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                             const std::string& manifest) override {
    oci::Index index = read_index();
    fs::create_directories(dir_ / "blobs" / "sha256");
    oci::Descriptor top = blob_descriptor(oci::media_type::kOciManifest, manifest);
    std::vector<std::pair<oci::Descriptor, std::string>> all = blobs;
    all.emplace_back(top, manifest);
    for (const auto& [descriptor, bytes] : all) {
      fs::path path = blob_path(descriptor.digest);
      if (!fs::exists(path))
        oci::write_file_atomically(path, bytes);
    }
    std::erase_if(index.manifests, [&](const oci::Descriptor& d) { return ref_name(d) == tag; });
    top.annotations[oci::kRefNameAnnotation] = tag;
    index.manifests.push_back(std::move(top));
    oci::write_file_atomically(dir_ / "index.json", oci::serialize(index));
  }

  // The layout keeps referrers under the fallback tag, as a registry without the API would.
  void write_referrer(const oci::Digest& subject,
                      const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                      const std::string& manifest) override {
    fs::create_directories(dir_ / "blobs" / "sha256");
    oci::Descriptor d = blob_descriptor(oci::media_type::kOciManifest, manifest);
    std::vector<std::pair<oci::Descriptor, std::string>> all = blobs;
    all.emplace_back(d, manifest);
    oci::Index listed;
    listed.media_type = oci::media_type::kOciIndex;
    if (std::optional<std::string> existing = read_tagged_manifest(oci::referrers_tag(subject)))
      listed = oci::parse_index(*existing);
    listed = oci::with_referrer(std::move(listed),
                                oci::referrer_descriptor(d, oci::parse_manifest(manifest)));
    std::string index_bytes = oci::serialize(listed);
    for (const auto& [descriptor, bytes] : all) {
      fs::path path = blob_path(descriptor.digest);
      if (!fs::exists(path))
        oci::write_file_atomically(path, bytes);
    }
    // The tag names the index; write_tagged_manifest wants an image manifest's bytes, so the
    // index is written the same way by hand.
    oci::Index index = read_index();
    oci::Descriptor top = blob_descriptor(oci::media_type::kOciIndex, index_bytes);
    if (!fs::exists(blob_path(top.digest)))
      oci::write_file_atomically(blob_path(top.digest), index_bytes);
    std::string tag = oci::referrers_tag(subject);
    std::erase_if(index.manifests, [&](const oci::Descriptor& x) { return ref_name(x) == tag; });
    top.annotations[oci::kRefNameAnnotation] = tag;
    index.manifests.push_back(std::move(top));
    oci::write_file_atomically(dir_ / "index.json", oci::serialize(index));
  }

  std::vector<oci::Descriptor> referrers(const oci::Digest& subject) override {
    std::optional<std::string> listed = read_tagged_manifest(oci::referrers_tag(subject));
    if (!listed)
      return {};
    return oci::parse_index(*listed).manifests;
  }

 private:
  static std::string ref_name(const oci::Descriptor& d) {
    auto it = d.annotations.find(oci::kRefNameAnnotation);
    return it == d.annotations.end() ? std::string() : it->second;
  }
  static bool is_signature_tag(const std::string& name) {
    // .sig, .att and the referrers fallback tag (sha256-<64 hex>) are not images to sign.
    return starts_with(name, "sha256-") &&
           (ends_with(name, ".sig") || ends_with(name, ".att") || name.size() == 7 + 64);
  }
  oci::Index read_index() const {
    fs::path file = dir_ / "index.json";
    if (!fs::exists(file))
      throw Error(name_ + ": " + dir_.string() + " is not an OCI image layout (no index.json)");
    return oci::parse_index(read_file(file));
  }
  fs::path blob_path(const oci::Digest& digest) const {
    return dir_ / "blobs" / digest.algorithm() / digest.hex();
  }

  fs::path dir_;
  std::string tag_;
  std::string name_;
};

class StoreTarget : public SignatureTarget {
 public:
  StoreTarget(oci::Store store, std::string name)
      : store_(std::move(store)), name_(std::move(name)) {
    std::optional<oci::TaggedImage> found = store_.find(name_);
    if (!found)
      throw Error("image " + quote(name_) + " is not in the store " + store_.root().string());
    if (found->name.empty()) {
      throw Error("image " + quote(name_) +
                  " has no name to tag its signatures under: give it one with kiln tag");
    }
    image_ = std::move(*found);
    oci::Reference ref = oci::parse_reference(image_.name);
    ref.tag.clear();
    ref.digest.reset();
    repository_ = ref.name();
    short_repository_ = ref.familiar();
  }

  const std::string& name() const override { return name_; }
  std::string repository() const override { return repository_; }
  oci::Descriptor resolve() override { return image_.descriptor; }
  std::string read(const oci::Descriptor& descriptor) override {
    return store_.read_blob(descriptor.digest);
  }

  std::optional<std::string> read_tagged_manifest(const std::string& tag) override {
    std::optional<oci::TaggedImage> found = store_.find(short_repository_ + ":" + tag);
    if (!found)
      return std::nullopt;
    return store_.read_blob(found->descriptor.digest);
  }

  void write_tagged_manifest(const std::string& tag,
                             const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                             const std::string& manifest) override {
    for (const auto& blob : blobs)
      store_.put_blob(blob.second);
    store_.put_blob(manifest);
    store_.tag(blob_descriptor(oci::media_type::kOciManifest, manifest),
               short_repository_ + ":" + tag);
  }

  void write_referrer(const oci::Digest& subject,
                      const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                      const std::string& manifest) override {
    for (const auto& blob : blobs)
      store_.put_blob(blob.second);
    store_.put_blob(manifest);
    oci::Descriptor d = blob_descriptor(oci::media_type::kOciManifest, manifest);
    oci::add_store_referrer(store_, short_repository_, subject,
                            oci::referrer_descriptor(d, oci::parse_manifest(manifest)));
  }

  std::vector<oci::Descriptor> referrers(const oci::Digest& subject) override {
    return oci::store_referrers(store_, short_repository_, subject);
  }

 private:
  oci::Store store_;
  std::string name_;
  oci::TaggedImage image_;
  std::string repository_;        // "docker.io/library/app"
  std::string short_repository_;  // "app"
};

// Whether the first component of `image` names a registry, as docker decides it.
bool names_registry(std::string_view image) {
  size_t slash = image.find('/');
  if (slash == std::string_view::npos)
    return false;
  std::string_view first = image.substr(0, slash);
  return first == "localhost" || first.find('.') != std::string_view::npos ||
         first.find(':') != std::string_view::npos;
}

}  // namespace

std::string signature_tag(const oci::Digest& subject) {
  return subject.algorithm() + "-" + subject.hex() + ".sig";
}

std::string key_password(const std::string& purpose, bool confirm) {
  for (const char* variable : {"KILN_PASSWORD", "COSIGN_PASSWORD"}) {
    if (const char* value = std::getenv(variable))
      return value;
  }
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!tty) {
    throw Error("no password for " + purpose +
                ": set KILN_PASSWORD (empty for none); there is no terminal to ask on");
  }
  std::string password = ask_on_terminal(tty.get(), "Enter password for " + purpose + ": ");
  if (confirm && ask_on_terminal(tty.get(), "Enter password again: ") != password)
    throw Error("the passwords for " + purpose + " do not match");
  return password;
}

bool PublicKey::verifies(std::string_view payload, std::string_view signature) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(payload.data()),
                       payload.size()) == 1;
  ERR_clear_error();
  return ok;
}

SigningKey SigningKey::generate() {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key)
    throw openssl_error("generate an ECDSA P-256 key");
  return SigningKey(std::move(key));
}

std::string SigningKey::sign(std::string_view payload) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1)
    throw openssl_error("sign: EVP_DigestSignInit");
  auto data = reinterpret_cast<const unsigned char*>(payload.data());
  size_t length = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &length, data, payload.size()) != 1)
    throw openssl_error("sign");
  std::string signature(length, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, data,
                     payload.size()) != 1) {
    throw openssl_error("sign");
  }
  signature.resize(length);
  return signature;
}

PublicKey SigningKey::public_key() const {
  if (EVP_PKEY_up_ref(key_.get()) != 1)
    throw openssl_error("EVP_PKEY_up_ref");
  return PublicKey(EvpPkeyPtr(key_.get()));
}

std::string SigningKey::public_key_pem() const {
  return write_to_string("write the public key",
                         [&](BIO* bio) { return PEM_write_bio_PUBKEY(bio, key_.get()); });
}

std::string SigningKey::private_key_pem(const std::string& password) const {
  if (password.size() > INT_MAX)
    throw Error("the password is too long");
  return write_to_string("write the private key", [&](BIO* bio) {
    if (password.empty())
      return PEM_write_bio_PKCS8PrivateKey(bio, key_.get(), nullptr, nullptr, 0, nullptr, nullptr);
    return PEM_write_bio_PKCS8PrivateKey(bio, key_.get(), EVP_aes_256_cbc(), password.data(),
                                         static_cast<int>(password.size()), nullptr, nullptr);
  });
}

namespace {

// cosign's own private key format (cosign generate-key-pair): a PEM block "ENCRYPTED SIGSTORE
// PRIVATE KEY" (or, before cosign 2, "ENCRYPTED COSIGN PRIVATE KEY") whose body is JSON:
//   {"kdf": {"name": "scrypt", "params": {"N": .., "r": .., "p": ..}, "salt": B64},
//    "cipher": {"name": "nacl/secretbox", "nonce": B64}, "ciphertext": B64}
// The key is scrypt(password, salt, N, r, p) of 32 bytes (OpenSSL); the ciphertext opens with
// NaCl's secretbox (libsodium) to the PKCS#8 DER private key. Returns nullopt for other PEM.
std::optional<EvpPkeyPtr> read_cosign_key(const std::string& pem, const fs::path& key_file) {
  std::string body;
  for (const char* label : {"ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"}) {
    std::string begin = std::string("-----BEGIN ") + label + "-----";
    std::string end = std::string("-----END ") + label + "-----";
    size_t b = pem.find(begin);
    size_t e = pem.find(end);
    if (b != std::string::npos && e != std::string::npos && e > b) {
      body = pem.substr(b + begin.size(), e - b - begin.size());
      break;
    }
  }
  if (body.empty())
    return std::nullopt;
  std::string what = "the cosign key " + key_file.string();
  std::erase_if(body, [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  nlohmann::json doc;
  std::string salt, nonce, ciphertext;
  uint64_t n = 0, r = 0, p = 0;
  try {
    doc = nlohmann::json::parse(base64_decode(body));
    if (doc.at("kdf").at("name") != "scrypt" || doc.at("cipher").at("name") != "nacl/secretbox")
      throw Error(what + ": only scrypt with nacl/secretbox is supported");
    n = doc.at("kdf").at("params").at("N").get<uint64_t>();
    r = doc.at("kdf").at("params").at("r").get<uint64_t>();
    p = doc.at("kdf").at("params").at("p").get<uint64_t>();
    salt = base64_decode(doc.at("kdf").at("salt").get<std::string>());
    nonce = base64_decode(doc.at("cipher").at("nonce").get<std::string>());
    ciphertext = base64_decode(doc.at("ciphertext").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + " is malformed: " + e.what());
  } catch (const Error& e) {
    throw Error(what + " is malformed: " + e.what());
  }
  if (nonce.size() != crypto_secretbox_NONCEBYTES || ciphertext.size() < crypto_secretbox_MACBYTES)
    throw Error(what + " is malformed: wrong nonce or ciphertext size");
  if (n < 2 || (n & (n - 1)) != 0 || n > (1u << 22) || r == 0 || r > 32 || p == 0 || p > 16)
    throw Error(what + ": scrypt parameters N=" + std::to_string(n) + " r=" + std::to_string(r) +
                " p=" + std::to_string(p) + " are out of range");
  if (sodium_init() < 0)
    throw Error("libsodium cannot be initialised");
  std::string password = key_password(what, false);
  unsigned char key[crypto_secretbox_KEYBYTES];
  if (EVP_PBE_scrypt(password.data(), password.size(),
                     reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), n, r, p,
                     uint64_t{1} << 30, key, sizeof key) != 1) {
    throw openssl_error(what + ": scrypt");
  }
  std::string der(ciphertext.size() - crypto_secretbox_MACBYTES, '\0');
  int opened = crypto_secretbox_open_easy(
      reinterpret_cast<unsigned char*>(der.data()),
      reinterpret_cast<const unsigned char*>(ciphertext.data()), ciphertext.size(),
      reinterpret_cast<const unsigned char*>(nonce.data()), key);
  sodium_memzero(key, sizeof key);
  if (opened != 0)
    throw Error("cannot decrypt " + what + ": wrong password");
  const auto* data = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr parsed(d2i_AutoPrivateKey(nullptr, &data, static_cast<long>(der.size())));
  sodium_memzero(der.data(), der.size());
  if (!parsed)
    throw openssl_error(what + " does not hold a private key");
  return parsed;
}

}  // namespace

SigningKey load_signing_key(const fs::path& key_file) {
  std::string pem = read_file(key_file);
  if (std::optional<EvpPkeyPtr> cosign = read_cosign_key(pem, key_file)) {
    require_p256(cosign->get(), key_file);
    return SigningKey(std::move(*cosign));
  }
  BioPtr bio = memory_bio(pem);
  PasswordRequest request{"the private key " + key_file.string(), std::nullopt, nullptr};
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, password_callback, &request));
  if (!key) {
    if (request.error) {
      ERR_clear_error();
      std::rethrow_exception(request.error);
    }
    if (request.password) {
      ERR_clear_error();
      throw Error("cannot decrypt the private key " + key_file.string() + ": wrong password");
    }
    throw openssl_error(key_file.string() + " is not a PEM private key");
  }
  require_p256(key.get(), key_file);
  return SigningKey(std::move(key));
}

PublicKey load_public_key(const fs::path& key_file) {
  std::string pem = read_file(key_file);
  BioPtr bio = memory_bio(pem);
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    throw Error(key_file.string() +
                " is not a PEM public key (-----BEGIN PUBLIC KEY-----, as cosign.pub)");
  }
  require_p256(key.get(), key_file);
  return PublicKey(std::move(key));
}

KeyPairFiles generate_key_pair(const fs::path& prefix, const std::string& password,
                               bool overwrite) {
  KeyPairFiles files{prefix.string() + ".key", prefix.string() + ".pub"};
  if (!overwrite) {
    for (const fs::path& file : {files.private_key, files.public_key}) {
      if (fs::exists(file))
        throw Error(file.string() + " already exists");
    }
  }
  SigningKey key = SigningKey::generate();
  write_new_file(files.private_key, key.private_key_pem(password), 0600, overwrite);
  write_new_file(files.public_key, key.public_key_pem(), 0644, overwrite);
  return files;
}

std::string simple_signing_payload(const std::string& docker_reference, const oci::Digest& image,
                                   const std::map<std::string, std::string>& annotations) {
  nlohmann::ordered_json payload;
  payload["critical"]["identity"]["docker-reference"] = docker_reference;
  payload["critical"]["image"]["docker-manifest-digest"] = image.str();
  payload["critical"]["type"] = kCosignSignatureType;
  payload["optional"] = nullptr;
  for (const auto& [key, value] : annotations)
    payload["optional"][key] = value;
  try {
    return payload.dump();
  } catch (const nlohmann::json::exception&) {
    throw Error("a signature annotation is not valid UTF-8");
  }
}

std::unique_ptr<SignatureTarget> registry_target(const oci::Reference& ref,
                                                 const oci::RegistryOptions& options) {
  return std::make_unique<RegistryTarget>(ref, options);
}

std::unique_ptr<SignatureTarget> layout_target(const fs::path& dir, std::string tag) {
  return std::make_unique<LayoutTarget>(dir, std::move(tag));
}

std::unique_ptr<SignatureTarget> store_target(oci::Store store, std::string name) {
  return std::make_unique<StoreTarget>(std::move(store), std::move(name));
}

std::unique_ptr<SignatureTarget> open_signature_target(std::string_view image,
                                                       const oci::RegistryOptions& options) {
  if (starts_with(image, "oci:")) {
    std::string_view rest = image.substr(4);
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos)
      return layout_target(std::string(rest), "");
    return layout_target(std::string(rest.substr(0, colon)), std::string(rest.substr(colon + 1)));
  }
  if (starts_with(image, "docker://"))
    return registry_target(oci::parse_reference(image.substr(9)), options);
  if (names_registry(image))
    return registry_target(oci::parse_reference(image), options);
  return store_target(oci::Store(oci::Store::default_root()), std::string(image));
}

std::vector<oci::Descriptor> signing_subjects(SignatureTarget& target, const oci::Descriptor& top,
                                              bool recursive) {
  std::vector<oci::Descriptor> subjects = {top};
  if (!recursive)
    return subjects;
  std::set<oci::Digest> seen = {top.digest};
  for (size_t i = 0; i < subjects.size(); ++i) {
    if (!oci::media_type::is_index(subjects[i].media_type))
      continue;
    for (const oci::Descriptor& child : oci::parse_index(target.read(subjects[i])).manifests) {
      if (seen.insert(child.digest).second)
        subjects.push_back(child);
    }
  }
  return subjects;
}

namespace {

// Whether one of `layers` is the payload `digest` with a signature that verifies with `key`
// (ECDSA signatures differ every time: this is how signing again stays idempotent).
bool signed_by(const std::vector<oci::Descriptor>& layers, const oci::Digest& digest,
               const std::string& payload, const SigningKey& key) {
  PublicKey public_key = key.public_key();
  for (const oci::Descriptor& d : layers) {
    auto signature = d.annotations.find(kSignatureAnnotation);
    if (d.digest != digest || signature == d.annotations.end())
      continue;
    std::optional<std::string> der = decode_signature(signature->second);
    if (der && public_key.verifies(payload, *der))
      return true;
  }
  return false;
}

}  // namespace

bool sign_image(SignatureTarget& target, const oci::Digest& subject, const SigningKey& key,
                const std::map<std::string, std::string>& annotations) {
  std::string payload = simple_signing_payload(target.repository(), subject, annotations);
  oci::Descriptor layer = blob_descriptor(kSimpleSigningMediaType, payload);

  oci::Manifest manifest;
  if (std::optional<std::string> existing = target.read_tagged_manifest(signature_tag(subject)))
    manifest = parse_tagged_manifest(*existing, target, signature_tag(subject));
  if (signed_by(manifest.layers, layer.digest, payload, key))
    return false;

  layer.annotations[kSignatureAnnotation] = base64_encode(key.sign(payload));
  manifest.layers.push_back(layer);
  std::string config = signature_config(manifest.layers);
  manifest.schema_version = 2;
  manifest.media_type = oci::media_type::kOciManifest;
  manifest.config = blob_descriptor(oci::media_type::kOciConfig, config);
  target.write_tagged_manifest(signature_tag(subject),
                               {{layer, payload}, {manifest.config, config}},
                               oci::serialize(manifest));
  return true;
}

bool sign_image_as_referrer(SignatureTarget& target, const oci::Descriptor& subject,
                            const SigningKey& key,
                            const std::map<std::string, std::string>& annotations) {
  std::string payload = simple_signing_payload(target.repository(), subject.digest, annotations);
  oci::Descriptor layer = blob_descriptor(kSimpleSigningMediaType, payload);
  if (signed_by(detail::referrer_layers(target, subject.digest, kCosignSignatureArtifactType),
                layer.digest, payload, key)) {
    return false;
  }
  layer.annotations[kSignatureAnnotation] = base64_encode(key.sign(payload));
  oci::Manifest manifest = detail::artifact_manifest(kCosignSignatureArtifactType, subject, layer);
  target.write_referrer(subject.digest, {{layer, payload}, {manifest.config, "{}"}},
                        oci::serialize(manifest));
  return true;
}

void sign_registry_image(const SigningKey& key, const oci::Reference& ref,
                         const oci::Digest& manifest_digest, const oci::RegistryOptions& options,
                         const std::map<std::string, std::string>& annotations) {
  std::unique_ptr<SignatureTarget> target = registry_target(ref, options);
  sign_image(*target, manifest_digest, key, annotations);
}

bool VerifyResult::any_verified() const {
  for (const SignatureCheck& check : checks) {
    if (check.verified)
      return true;
  }
  return false;
}

VerifyResult verify_image(SignatureTarget& target, const oci::Digest& subject, const PublicKey& key,
                          const std::string& key_name) {
  VerifyResult result;
  std::vector<oci::Descriptor> layers;
  if (std::optional<std::string> bytes = target.read_tagged_manifest(signature_tag(subject))) {
    oci::Manifest manifest = parse_tagged_manifest(*bytes, target, signature_tag(subject));
    layers = manifest.layers;
  }
  std::vector<oci::Descriptor> referred =
      detail::referrer_layers(target, subject, kCosignSignatureArtifactType);
  layers.insert(layers.end(), referred.begin(), referred.end());
  result.found = !layers.empty();
  for (const oci::Descriptor& layer : layers) {
    SignatureCheck check;
    check.layer = layer;
    check.failure = check_layer(target, layer, subject, key, key_name, check.optional);
    check.verified = check.failure.empty();
    result.checks.push_back(std::move(check));
  }
  return result;
}

}  // namespace kiln::exporter
