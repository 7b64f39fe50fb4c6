// Registry credentials in the files docker, podman and buildah use.
//
// Lookup order (the first file that has an entry for the registry wins):
//   1. the --authfile file; when one is given, it is the only file read
//   2. $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json
//   3. ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json
//   4. $DOCKER_CONFIG/config.json, else ~/.docker/config.json
// Entries live under "auths" keyed by host ("localhost:5000", "docker.io" — for docker.io also
// "https://index.docker.io/v1/"; a scheme and a path in a key are ignored), each with a base64
// "auth" of "user:password" (or "username" and "password" fields, or "identitytoken").
// In each file, a credential helper named for the registry in "credHelpers" is asked first
// (`docker-credential-NAME get`, the server on standard input, JSON on standard output), then
// the "auths" entries, then the file's "credsStore" helper; a helper that says "not found" lets
// the lookup go on, one that fails otherwise is an error naming it. `kiln login` writes the
// first of these that applies (--authfile, $REGISTRY_AUTH_FILE, else
// ${XDG_RUNTIME_DIR}/containers/auth.json, else
// ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json), keeping every other entry and field of the
// file, with mode 0600.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kiln/oci/registry.hpp"

namespace kiln::oci {

// The files to read, in order (existing or not), given an explicit --authfile (may be empty).
std::vector<std::filesystem::path> auth_files(
    const std::optional<std::filesystem::path>& explicit_file);

// Credentials for `registry` ("localhost:5000", "docker.io"), nullopt when none is stored.
// Throws kiln::Error naming the file when it exists but is malformed.
std::optional<Credentials> find_credentials(
    const std::string& registry, const std::optional<std::filesystem::path>& explicit_file);

// The file `kiln login` writes.
std::filesystem::path login_file(const std::optional<std::filesystem::path>& explicit_file);
// Replaces the entry for `registry` (creating the file and its directory when missing). Throws
// kiln::Error naming the file when it is malformed or cannot be written.
void store_credentials(const std::filesystem::path& file, const std::string& registry,
                       const Credentials& credentials);
// Removes the entries for `registry`. False when there was none (or no file).
bool remove_credentials(const std::filesystem::path& file, const std::string& registry);
// Removes every entry under "auths" (other fields stay). Returns how many there were.
size_t remove_all_credentials(const std::filesystem::path& file);

// base64("user:password"): the "auth" field of the files and HTTP basic auth's credentials.
std::string encode_basic_auth(const Credentials& credentials);

}  // namespace kiln::oci
