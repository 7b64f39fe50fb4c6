// A client for OCI distribution registries (the distribution spec's /v2/ API) over libcurl, and
// pulling/pushing whole images between a registry and the local store.
//
// Transport: HTTPS with the system CAs. Plain HTTP (and no TLS verification) is used only for
// registries the caller marks insecure, for localhost/127.0.0.1/[::1] and when tls_verify is false
// (--tls-verify=false): for those, kiln tries HTTPS first (without verifying the certificate) and
// falls back to HTTP when the TLS handshake fails, as podman and docker do.
// Auth: the first request that gets 401 reads WWW-Authenticate: Bearer realm/service/scope → a
// token from the realm (anonymous, or with the credentials as basic auth; an identity token is
// exchanged as an OAuth2 refresh token), cached per scope and reused until it expires; Basic →
// basic auth with the credentials. Later requests send the learnt kind of auth up front.
// Credentials come from RegistryOptions::credentials, else the auth files (auth_config.hpp).
// Retries: connection errors, 429 and 5xx are retried with exponential backoff (honouring
// Retry-After), `retries` times; a blob upload that fails half-way starts again with a new upload
// session, a blob download that breaks off resumes with a Range request. Redirects are followed
// for blob GETs (to object storage: the Authorization header is not sent to another host).
// Errors: RegistryError (a kiln::Error) saying what was done to what, then why:
// "pulling manifest localhost:5000/app:1: unauthorized: authentication required (HTTP 401); no
// credentials for localhost:5000 (kiln login, or --creds)",
// "pulling blob sha256:… of localhost:5000/app: content does not match its digest (got sha256:…)".
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/io.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/image_source.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {

struct Credentials {
  std::string username;
  std::string password;  // or an identity token when username is "<token>"
};

struct RegistryOptions {
  bool tls_verify = true;
  std::vector<std::string> insecure_registries;    // "host:port" allowed over plain HTTP
  std::optional<Credentials> credentials;          // --creds; else looked up in the auth files
  std::optional<std::filesystem::path> auth_file;  // --authfile; else the default lookup
  // --cert-dir: TLS files for this registry, as containers/image reads them: every *.crt a CA
  // trusted beside the system's, a *.cert with the *.key of the same name a client certificate.
  // Unset: /etc/containers/certs.d/HOST[:PORT], then /etc/docker/certs.d/HOST[:PORT], then
  // $HOME/.config/containers/certs.d/HOST[:PORT] — the first that exists. A registry with CAs
  // configured this way is verified even on loopback (unless tls_verify is false).
  std::optional<std::filesystem::path> cert_dir;
  int retries = 4;
  // The wait before each retry (podman's --retry-delay); unset: exponential from 250 ms, or what
  // a Retry-After header asks.
  std::optional<std::chrono::milliseconds> retry_delay;
  int parallel_downloads = 4;  // layers transferred at once (pull and push)
  int64_t chunk_size = 0;      // push: 0 monolithic PUT; else PATCH chunks of this many bytes
  // One line per blob pulled/pushed/mounted/skipped and per retry; may be empty. Called from
  // several threads, never at once.
  std::function<void(const std::string&)> log;
};

// A failed registry operation. what() is the whole message, "OPERATION: CAUSE";
// http_status() is the registry's answer (0 when none came: connection, TLS or content errors).
class RegistryError : public Error {
 public:
  RegistryError(const std::string& operation, std::string cause, int http_status, bool retriable)
      : Error(operation + ": " + cause),
        cause_(std::move(cause)),
        http_status_(http_status),
        retriable_(retriable) {}
  // Why it failed, without the operation: "unauthorized: authentication required (HTTP 401)".
  const std::string& cause() const { return cause_; }
  int http_status() const { return http_status_; }
  // True for failures worth trying again: connection errors, 429, 5xx.
  bool retriable() const { return retriable_; }

 private:
  std::string cause_;
  int http_status_;
  bool retriable_;
};

// One registry host ("docker.io" is served by registry-1.docker.io). Thread-safe: one client may
// serve parallel blob transfers.
class RegistryClient {
 public:
  RegistryClient(std::string domain, RegistryOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  const std::string& domain() const;

  // GET /v2/ with the credentials (the token for no scope, with token auth). Throws
  // RegistryError (http_status() 401 when the credentials are refused or missing).
  void ping();

  struct Manifest {
    std::string media_type;  // from the document (mediaType) or Content-Type
    std::string bytes;
    Digest digest;  // sha256 of bytes; checked against the reference when it is a digest
  };
  // GET /v2/<repo>/manifests/<tag|digest>, accepting OCI and Docker manifests and indexes.
  Manifest get_manifest(const std::string& repo, const std::string& reference);
  // HEAD of the same: the descriptor when it exists, nullopt on 404.
  std::optional<Descriptor> head_manifest(const std::string& repo, const std::string& reference);
  // Streams a blob to `sink`, checking size and digest while it flows; throws when they do not
  // match (the caller's sink must then be discarded).
  void get_blob(const std::string& repo, const Descriptor& blob, ByteSink& sink);
  // HEAD of the blob: true on 200, false on 404.
  bool blob_exists(const std::string& repo, const Digest& digest);
  // Cross-repository mount (POST ...?mount=D&from=R). False when the registry did not mount it.
  bool mount_blob(const std::string& repo, const Digest& digest, const std::string& from_repo);
  // Uploads the file as blob `blob` (monolithic, or chunked when options.chunk_size > 0). A
  // failed upload starts again with a new session, up to options.retries times.
  void put_blob(const std::string& repo, const Descriptor& blob, const std::filesystem::path& file);
  // PUT /v2/<repo>/manifests/<tag|digest> with Content-Type media_type. Returns the digest.
  Digest put_manifest(const std::string& repo, const std::string& reference,
                      const std::string& media_type, const std::string& bytes);
  // GET /v2/<repo>/referrers/<digest> (OCI distribution 1.1): the index of the manifests whose
  // subject is `subject`; nullopt when the registry has no referrers API (404).
  std::optional<Index> referrers(const std::string& repo, const Digest& subject);
  // GET /v2/<repo>/tags/list, following the Link header's pages.
  std::vector<std::string> list_tags(const std::string& repo);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Pulls `ref` for `platform` into `store` (index → the platform's manifest; every blob verified;
// layers in parallel; blobs already in the store are not downloaded again; nothing is stored
// unverified; the manifest is stored after its config and layers) and, when ref has a tag, tags
// the platform's manifest in the store under ref.familiar() without the digest. Returns the image
// like resolve_image does. A reference by digest is checked against that digest. Throws
// RegistryError for what the registry refuses or sends wrong, and kiln::Error naming ref and the
// platform (listing those it has) when an index has no image for the platform.
ResolvedImage pull_image(Store& store, const Reference& ref, const Platform& platform,
                         const RegistryOptions& options);

// Pushes the image or index `top` (and every blob and manifest it references, skipping blobs the
// registry has, mounting from `mount_from` repositories of the same registry when possible) to
// `ref`: an index's manifests by digest, then `top` under ref's tag (or digest). Manifests are
// pushed as stored, byte for byte. Returns the pushed manifest's digest.
Digest push_image(Store& store, const Descriptor& top, const Reference& ref,
                  const RegistryOptions& options, const std::vector<std::string>& mount_from = {});

// What to check after a failed push, by what the registry answered ("; check the credentials
// for HOST (kiln login HOST, --creds or --authfile) ..."); "" when there is nothing to add.
std::string push_failure_advice(const RegistryError& error, const Reference& ref);

}  // namespace kiln::oci
