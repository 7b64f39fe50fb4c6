#include "kiln/oci/auth_config.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kiln/base/base64.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/base/subprocess.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

fs::path home_dir() {
  std::string home = env("HOME");
  if (!home.empty())
    return home;
  if (const passwd* pw = ::getpwuid(::getuid()))
    return pw->pw_dir;
  throw Error("cannot find the home directory: $HOME is not set");
}

fs::path config_home() {
  std::string xdg = env("XDG_CONFIG_HOME");
  return xdg.empty() ? home_dir() / ".config" : fs::path(xdg);
}

// The registry a key of "auths" names, or nullopt for a key scoped to a repository namespace
// ("quay.io/org"), which kiln does not use. Keys written by old docker versions carry a scheme and
// a path ("https://index.docker.io/v1/"): both are dropped.
std::optional<std::string> registry_of_key(std::string_view key) {
  bool had_scheme = false;
  for (std::string_view scheme : {"https://", "http://"}) {
    if (starts_with(key, scheme)) {
      key.remove_prefix(scheme.size());
      had_scheme = true;
    }
  }
  size_t slash = key.find('/');
  if (slash != std::string_view::npos) {
    if (!had_scheme)
      return std::nullopt;
    key = key.substr(0, slash);
  }
  if (key == "index.docker.io" || key == "registry-1.docker.io")
    return "docker.io";
  return std::string(key);
}

// The registry as the user wrote it ("https://localhost:5000/v2/", "docker.io"), as a key.
std::string normalize_registry(const std::string& registry) {
  std::string text = registry;
  if (text.find("://") == std::string::npos)
    text = "https://" + text;  // so that a path, if any, is dropped
  return registry_of_key(text).value_or(registry);
}

// The "auth" value of an entry, decoded. The error does not quote the value: it is a secret.
std::string decode_auth(std::string_view text, const fs::path& file) {
  try {
    return base64_decode(trim(text));
  } catch (const Error&) {
    throw Error("auth file " + file.string() + ": an \"auth\" value is not valid base64");
  }
}

// The file as JSON; an empty object when it does not exist.
Json read_auth_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec))
    return Json::object();
  Json json;
  try {
    json = Json::parse(read_file(file));
  } catch (const Json::exception& e) {
    throw Error("auth file " + file.string() + ": not valid JSON: " + e.what());
  }
  if (!json.is_object())
    throw Error("auth file " + file.string() + ": not a JSON object");
  if (json.contains("auths") && !json["auths"].is_null() && !json["auths"].is_object())
    throw Error("auth file " + file.string() + ": \"auths\" is not an object");
  return json;
}

std::optional<Credentials> decode_entry(const Json& entry, const fs::path& file,
                                        const std::string& key) {
  auto text = [&](const char* field) -> std::string {
    if (!entry.contains(field) || entry[field].is_null())
      return "";
    if (!entry[field].is_string()) {
      throw Error("auth file " + file.string() + ": auths." + key + "." + field +
                  " is not a string");
    }
    return entry[field].get<std::string>();
  };
  if (!entry.is_object())
    throw Error("auth file " + file.string() + ": auths." + key + " is not an object");
  if (std::string token = text("identitytoken"); !token.empty())
    return Credentials{"<token>", token};
  if (std::string auth = text("auth"); !auth.empty()) {
    std::string decoded = decode_auth(auth, file);
    size_t colon = decoded.find(':');
    if (colon == std::string::npos) {
      throw Error("auth file " + file.string() + ": auths." + key +
                  ".auth is not base64 of \"user:password\"");
    }
    return Credentials{decoded.substr(0, colon), decoded.substr(colon + 1)};
  }
  std::string username = text("username");
  if (!username.empty())
    return Credentials{username, text("password")};
  return std::nullopt;  // e.g. an entry whose secret lives in a credential helper
}

// Writes the file with mode 0600 (temp file, fsync, rename), creating its directory (0700).
void write_auth_file(const fs::path& file, const Json& json) {
  std::error_code ec;
  fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      throw Error("create " + dir.string() + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  static std::atomic<unsigned> counter{0};
  fs::path temp = dir / ("." + file.filename().string() + "." + std::to_string(::getpid()) + "." +
                         std::to_string(counter++) + ".tmp");
  std::string bytes = json.dump(2) + "\n";
  try {
    UniqueFd fd = open_or_throw(temp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (::fchmod(fd.get(), 0600) != 0)
      throw Error("chmod " + temp.string() + ": " + std::strerror(errno));
    write_all(fd.get(), bytes.data(), bytes.size(), temp.string());
    if (::fsync(fd.get()) != 0)
      throw Error("fsync " + temp.string() + ": " + std::strerror(errno));
    if (::rename(temp.c_str(), file.c_str()) != 0)
      throw Error("rename " + temp.string() + " to " + file.string() + ": " + std::strerror(errno));
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

}  // namespace

std::string encode_basic_auth(const Credentials& credentials) {
  return base64_encode(credentials.username + ":" + credentials.password);
}

std::vector<fs::path> auth_files(const std::optional<fs::path>& explicit_file) {
  if (explicit_file && !explicit_file->empty())
    return {*explicit_file};
  std::vector<fs::path> files;
  if (std::string file = env("REGISTRY_AUTH_FILE"); !file.empty())
    files.emplace_back(file);
  else if (std::string runtime = env("XDG_RUNTIME_DIR"); !runtime.empty())
    files.push_back(fs::path(runtime) / "containers" / "auth.json");
  files.push_back(config_home() / "containers" / "auth.json");
  std::string docker = env("DOCKER_CONFIG");
  files.push_back(docker.empty() ? home_dir() / ".docker" / "config.json"
                                 : fs::path(docker) / "config.json");
  return files;
}

namespace {

// docker-credential-NAME get: the server on standard input, {"ServerURL", "Username", "Secret"}
// on standard output; "credentials not found" (any exit status but 0) means none.
std::optional<Credentials> ask_helper(const std::string& helper, const std::string& registry,
                                      const fs::path& file) {
  std::string program = "docker-credential-" + helper;
  std::string server = registry == "docker.io" ? "https://index.docker.io/v1/" : registry;
  ProgramOutput answer;
  try {
    answer = run_with_input({program, "get"}, server);
  } catch (const Error& e) {
    throw Error(file.string() + " names the credential helper " + helper + ": " + e.what());
  }
  if (answer.status != 0) {
    std::string said(trim(answer.out + answer.err));
    if (to_lower(said).find("not found") != std::string::npos)
      return std::nullopt;
    throw Error("credential helper " + program + " failed for " + registry + " (exit " +
                std::to_string(answer.status) + "): " + said);
  }
  try {
    Json reply = Json::parse(answer.out);
    Credentials c;
    c.username = reply.value("Username", "");
    c.password = reply.value("Secret", "");
    if (c.username.empty() && c.password.empty())
      return std::nullopt;
    return c;  // a Username of "<token>" makes Secret an identity token, as kiln takes it
  } catch (const Json::exception& e) {
    throw Error("credential helper " + program + " answered for " + registry +
                " with something that is not its JSON: " + e.what());
  }
}

// The helper a file's credHelpers name for `wanted` (keys normalised like "auths" keys).
std::optional<std::string> helper_for(const Json& json, const std::string& wanted) {
  if (!json.contains("credHelpers") || !json["credHelpers"].is_object())
    return std::nullopt;
  for (const auto& [key, value] : json["credHelpers"].items()) {
    if (value.is_string() && (key == wanted || registry_of_key(key) == wanted))
      return value.get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

std::optional<Credentials> find_credentials(const std::string& registry,
                                            const std::optional<fs::path>& explicit_file) {
  std::string wanted = normalize_registry(registry);
  for (const fs::path& file : auth_files(explicit_file)) {
    Json json = read_auth_file(file);
    // credHelpers for this registry first, then the file's entries, then its credsStore (as
    // docker and containers/image do).
    if (std::optional<std::string> helper = helper_for(json, wanted)) {
      if (auto found = ask_helper(*helper, wanted, file))
        return found;
    }
    std::optional<std::string> store;
    if (json.contains("credsStore") && json["credsStore"].is_string() &&
        !json["credsStore"].get<std::string>().empty())
      store = json["credsStore"].get<std::string>();
    if (!json.contains("auths") || json["auths"].is_null()) {
      if (store) {
        if (auto found = ask_helper(*store, wanted, file))
          return found;
      }
      continue;
    }
    const Json& auths = json["auths"];
    // An exact key wins over one that only normalises to the registry.
    if (auths.contains(wanted)) {
      if (auto found = decode_entry(auths[wanted], file, wanted))
        return found;
    }
    for (const auto& [key, entry] : auths.items()) {
      if (key != wanted && registry_of_key(key) == wanted) {
        if (auto found = decode_entry(entry, file, key))
          return found;
      }
    }
    if (store) {
      if (auto found = ask_helper(*store, wanted, file))
        return found;
    }
  }
  return std::nullopt;
}

fs::path login_file(const std::optional<fs::path>& explicit_file) {
  if (explicit_file && !explicit_file->empty())
    return *explicit_file;
  if (std::string file = env("REGISTRY_AUTH_FILE"); !file.empty())
    return file;
  if (std::string runtime = env("XDG_RUNTIME_DIR"); !runtime.empty())
    return fs::path(runtime) / "containers" / "auth.json";
  return config_home() / "containers" / "auth.json";
}

void store_credentials(const fs::path& file, const std::string& registry,
                       const Credentials& credentials) {
  Json json = read_auth_file(file);
  if (!json.contains("auths") || json["auths"].is_null())
    json["auths"] = Json::object();
  Json& entry = json["auths"][normalize_registry(registry)];
  if (!entry.is_object())
    entry = Json::object();
  for (const char* field : {"username", "password", "identitytoken"})
    entry.erase(field);
  entry["auth"] = encode_basic_auth(credentials);
  write_auth_file(file, json);
}

bool remove_credentials(const fs::path& file, const std::string& registry) {
  Json json = read_auth_file(file);
  if (!json.contains("auths") || !json["auths"].is_object())
    return false;
  std::string wanted = normalize_registry(registry);
  Json& auths = json["auths"];
  std::vector<std::string> doomed;
  for (const auto& [key, entry] : auths.items()) {
    if (key == registry || key == wanted || registry_of_key(key) == wanted)
      doomed.push_back(key);
  }
  if (doomed.empty())
    return false;
  for (const std::string& key : doomed)
    auths.erase(key);
  write_auth_file(file, json);
  return true;
}

size_t remove_all_credentials(const fs::path& file) {
  Json json = read_auth_file(file);
  if (!json.contains("auths") || !json["auths"].is_object() || json["auths"].empty())
    return 0;
  size_t count = json["auths"].size();
  json["auths"] = Json::object();
  write_auth_file(file, json);
  return count;
}

}  // namespace kiln::oci
