// Cosign-compatible image signatures, as sigstore/cosign's specs/SIGNATURE_SPEC.md describes them.
//
// A signature is a simple-signing payload that names the image by digest,
//   {"critical":{"identity":{"docker-reference":"REPO"},
//                "image":{"docker-manifest-digest":"sha256:..."},
//                "type":"cosign container image signature"},
//    "optional":{ANNOTATIONS} or null}
// signed with ECDSA P-256 over SHA-256 (an ASN.1 DER signature, base64). Every signature of one
// image is a layer of one OCI image manifest tagged "sha256-<hex>.sig" beside the image (tag-based
// discovery): the layer is the payload blob (media type kSimpleSigningMediaType) and carries the
// signature in its kSignatureAnnotation annotation. The manifest's config is the small image
// config cosign writes (empty os/architecture, one diff ID per payload).
//
// Where the image and its signatures live is a SignatureTarget: a registry repository, an OCI
// image layout (the .sig manifest is one more ref.name in index.json) or the local store (tagged
// "REPO:sha256-<hex>.sig").
//
// Keys: PEM files. Private keys are PKCS#8 ("PRIVATE KEY", or "ENCRYPTED PRIVATE KEY" under a
// password: PBES2, AES-256-CBC with PBKDF2), or SEC1 "EC PRIVATE KEY" as `openssl ecparam` writes
// them, or cosign's own "ENCRYPTED SIGSTORE PRIVATE KEY" / "ENCRYPTED COSIGN PRIVATE KEY" as
// `cosign generate-key-pair` writes them (scrypt through OpenSSL, NaCl secretbox through
// libsodium); public keys are SubjectPublicKeyInfo ("PUBLIC KEY"), the format of cosign.pub.
//
// Nothing here is thread-safe unless it says so; keys may be shared between threads for reading.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace kiln::exporter {

inline constexpr const char* kSimpleSigningMediaType =
    "application/vnd.dev.cosign.simplesigning.v1+json";
inline constexpr const char* kSignatureAnnotation = "dev.cosignproject.cosign/signature";
inline constexpr const char* kCosignSignatureType = "cosign container image signature";

// The tag of `subject`'s signature manifest: "sha256-<hex>.sig".
std::string signature_tag(const oci::Digest& subject);

// The password of a private key: $KILN_PASSWORD, else $COSIGN_PASSWORD (either may be set and
// empty: no password), else asked on the terminal (/dev/tty, without echo; twice when `confirm`).
// Throws kiln::Error naming `purpose` when neither variable is set and there is no terminal.
std::string key_password(const std::string& purpose, bool confirm);

namespace detail {
struct EvpPkeyFree {
  void operator()(evp_pkey_st* key) const;
};
}  // namespace detail

// An owned OpenSSL EVP_PKEY.
using EvpPkeyPtr = std::unique_ptr<evp_pkey_st, detail::EvpPkeyFree>;

// An ECDSA P-256 public key. Movable, not copyable.
class PublicKey {
 public:
  // Takes a key the caller has checked to be an EC P-256 key.
  explicit PublicKey(EvpPkeyPtr key) : key_(std::move(key)) {}

  // True when `signature` (DER) is an ECDSA signature of SHA-256(payload) by this key; false for
  // a wrong or malformed signature.
  bool verifies(std::string_view payload, std::string_view signature) const;

 private:
  EvpPkeyPtr key_;
};

// An ECDSA P-256 private key. Movable, not copyable.
class SigningKey {
 public:
  // Takes a key the caller has checked to be an EC P-256 private key.
  explicit SigningKey(EvpPkeyPtr key) : key_(std::move(key)) {}

  // A fresh key pair from OpenSSL's default random source.
  static SigningKey generate();

  // The DER ECDSA signature of SHA-256(payload). Throws kiln::Error when OpenSSL fails.
  std::string sign(std::string_view payload) const;
  PublicKey public_key() const;
  // The public half as PEM "PUBLIC KEY" (SubjectPublicKeyInfo).
  std::string public_key_pem() const;
  // The private key as PKCS#8 PEM: "ENCRYPTED PRIVATE KEY" (AES-256-CBC, PBKDF2) under
  // `password`, or "PRIVATE KEY" when the password is empty.
  std::string private_key_pem(const std::string& password) const;

 private:
  EvpPkeyPtr key_;
};

// Reads a PEM private key (see the top of this file), asking key_password() only when the file is
// encrypted. Throws kiln::Error naming the file when it cannot be read, the password is wrong, it
// is in cosign's own encrypted format, or it is not an EC P-256 key.
SigningKey load_signing_key(const std::filesystem::path& key_file);

// Reads a PEM "PUBLIC KEY". Throws kiln::Error naming the file when it cannot be read or is not an
// EC P-256 public key.
PublicKey load_public_key(const std::filesystem::path& key_file);

struct KeyPairFiles {
  std::filesystem::path private_key;  // PREFIX.key, mode 0600
  std::filesystem::path public_key;   // PREFIX.pub
};

// Generates a key pair and writes PREFIX.key (PKCS#8, encrypted unless `password` is empty) and
// PREFIX.pub. Throws kiln::Error, writing nothing, when either file exists and !overwrite.
KeyPairFiles generate_key_pair(const std::filesystem::path& prefix, const std::string& password,
                               bool overwrite);

// The simple-signing payload for `image` in repository `docker_reference`, as compact JSON
// ("optional" is null when there are no annotations).
std::string simple_signing_payload(const std::string& docker_reference, const oci::Digest& image,
                                   const std::map<std::string, std::string>& annotations);

// Where an image and its signature manifests live. Implementations: registry_target,
// layout_target, store_target.
class SignatureTarget {
 public:
  virtual ~SignatureTarget() = default;

  // What the user named, for messages: "127.0.0.1:5000/app:1", "oci:/tmp/layout:1", "app:1".
  virtual const std::string& name() const = 0;
  // The repository payloads name as their docker-reference ("127.0.0.1:5000/app",
  // "docker.io/library/app"); empty for an OCI layout, which has none.
  virtual std::string repository() const = 0;
  // The manifest or index the name points at (a tag is resolved to its digest now). Throws
  // kiln::Error when there is none.
  virtual oci::Descriptor resolve() = 0;
  // The bytes of a manifest, index or blob of the repository. Throws kiln::Error when it is
  // missing or does not match its digest.
  virtual std::string read(const oci::Descriptor& descriptor) = 0;
  // The bytes of the manifest tagged `tag` (signature_tag, attestation_tag) in the image's
  // repository; nullopt when there is none.
  virtual std::optional<std::string> read_tagged_manifest(const std::string& tag) = 0;
  // Stores `blobs` (descriptor and bytes; those already present are skipped), then `manifest`
  // (an OCI image manifest) tagged `tag`, replacing what that tag named.
  virtual void write_tagged_manifest(
      const std::string& tag, const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
      const std::string& manifest) = 0;
  // Stores `blobs`, then `manifest` (an OCI 1.1 artifact whose subject is `subject`) by digest,
  // and lists it as a referrer of `subject` (oci/referrers.hpp: the registry's API or the
  // sha256-<hex> fallback tag; in a layout and in the store, that tag).
  virtual void write_referrer(const oci::Digest& subject,
                              const std::vector<std::pair<oci::Descriptor, std::string>>& blobs,
                              const std::string& manifest) = 0;
  // The referrers of `subject` (their descriptors, with artifactType); empty when none.
  virtual std::vector<oci::Descriptor> referrers(const oci::Digest& subject) = 0;
};

// `ref` in its registry (a tag is resolved with a HEAD of the manifest).
std::unique_ptr<SignatureTarget> registry_target(const oci::Reference& ref,
                                                 const oci::RegistryOptions& options);
// The image tagged `tag` (ref.name) in the OCI layout `dir`; with an empty tag, the layout's only
// image (signature manifests do not count).
std::unique_ptr<SignatureTarget> layout_target(const std::filesystem::path& dir, std::string tag);
// The image `name` (a name or ID, as Store::find takes it) in the local store. Signature manifests
// are tagged under the image's repository name, so the image must have a name.
std::unique_ptr<SignatureTarget> store_target(oci::Store store, std::string name);

// What `image` on the command line names:
//   oci:DIR[:TAG]            an OCI layout
//   docker://REF             a registry image
//   REF with a registry      a registry image, when the first component of the name is a
//                            registry host (has '.' or ':', or is "localhost"): "ghcr.io/x/y:1"
//   anything else            an image in the local store ("app:1", an image ID)
// The last case opens the store at oci::Store::default_root().
std::unique_ptr<SignatureTarget> open_signature_target(std::string_view image,
                                                       const oci::RegistryOptions& options);

// `top` first and, with `recursive`, every manifest an index lists (nested indexes included),
// each once.
std::vector<oci::Descriptor> signing_subjects(SignatureTarget& target, const oci::Descriptor& top,
                                              bool recursive);

// Adds a signature of `subject` by `key` to the subject's signature manifest (creating it when
// there is none; the layers already there are kept, in order). Returns false, changing nothing,
// when the manifest already has a layer with the same payload whose signature verifies with this
// key (ECDSA signatures differ every time; this is how a repeated `kiln sign` stays idempotent).
// Throws kiln::Error (oci::RegistryError for registries) when reading or writing fails.
bool sign_image(SignatureTarget& target, const oci::Digest& subject, const SigningKey& key,
                const std::map<std::string, std::string>& annotations = {});

// The artifact type of a signature stored as an OCI 1.1 referrer (cosign's, in its
// registry-referrers mode).
inline constexpr const char* kCosignSignatureArtifactType =
    "application/vnd.dev.cosign.artifact.sig.v1+json";

// The same signature stored as a referrer of `subject` instead of under the .sig tag: an
// artifact manifest (artifactType kCosignSignatureArtifactType, the empty config, the payload
// layer with its signature annotation, `subject` as subject). Returns false, changing nothing,
// when such a referrer with this payload already verifies with `key`.
bool sign_image_as_referrer(SignatureTarget& target, const oci::Descriptor& subject,
                            const SigningKey& key,
                            const std::map<std::string, std::string>& annotations = {});

// Signs `manifest_digest` of the registry image `ref` (its repository; ref's tag and digest are
// not used) with `key`: what `kiln build --push --sign-key` does after the push.
void sign_registry_image(const SigningKey& key, const oci::Reference& ref,
                         const oci::Digest& manifest_digest, const oci::RegistryOptions& options,
                         const std::map<std::string, std::string>& annotations = {});

// The outcome of checking one layer of a signature manifest.
struct SignatureCheck {
  oci::Descriptor layer;
  bool verified = false;
  // Why it did not verify, for the user: "signature does not verify with cosign.pub",
  // "payload is for sha256:X, not sha256:Y", ...
  std::string failure;
  // The payload's "optional" object as JSON text ("null" when none); set when verified.
  std::string optional;
};

struct VerifyResult {
  bool found = false;                  // a signature manifest with at least one layer exists
  std::vector<SignatureCheck> checks;  // one per layer, in order
  bool any_verified() const;
};

// Checks every signature of `subject`, under its .sig tag and among its referrers: the payload blob
// matches the layer's digest, the signature verifies with `key` (`key_name` names it in failures),
// the payload is a cosign simple-signing document whose docker-manifest-digest is `subject`, and
// whose docker-reference, when both it and target.repository() are non-empty, names the same
// repository. Throws kiln::Error only when the signature manifest itself cannot be read or parsed;
// a layer that fails is a failed check.
VerifyResult verify_image(SignatureTarget& target, const oci::Digest& subject, const PublicKey& key,
                          const std::string& key_name);

}  // namespace kiln::exporter
