#include "kiln/oci/auth_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::oci {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Sets (or, with nullopt, unsets) an environment variable until the end of the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

bool same(const std::optional<Credentials>& c, const std::string& user, const std::string& pw) {
  return c && c->username == user && c->password == pw;
}

// A home directory and a runtime directory of its own, and none of the variables that would
// point kiln at the real user's files.
class AuthConfigTest : public ::testing::Test {
 protected:
  TempDir dir_;
  fs::path home_ = dir_.path() / "home";
  fs::path runtime_ = dir_.path() / "run";
  ScopedEnv home_env_{"HOME", home_.string()};
  ScopedEnv runtime_env_{"XDG_RUNTIME_DIR", runtime_.string()};
  ScopedEnv config_env_{"XDG_CONFIG_HOME", std::nullopt};
  ScopedEnv auth_file_env_{"REGISTRY_AUTH_FILE", std::nullopt};
  ScopedEnv docker_env_{"DOCKER_CONFIG", std::nullopt};

  fs::path podman_file() const { return runtime_ / "containers" / "auth.json"; }
  fs::path config_file() const { return home_ / ".config" / "containers" / "auth.json"; }
  fs::path docker_file() const { return home_ / ".docker" / "config.json"; }
};

TEST_F(AuthConfigTest, FilesAreReadInTheDocumentedOrder) {
  EXPECT_THAT(auth_files(std::nullopt), ElementsAre(podman_file(), config_file(), docker_file()));
  EXPECT_THAT(auth_files(fs::path("/x/auth.json")), ElementsAre(fs::path("/x/auth.json")));
  ScopedEnv file("REGISTRY_AUTH_FILE", "/y/auth.json");
  ScopedEnv docker("DOCKER_CONFIG", "/d");
  ScopedEnv config("XDG_CONFIG_HOME", "/c");
  EXPECT_THAT(auth_files(std::nullopt),
              ElementsAre(fs::path("/y/auth.json"), fs::path("/c/containers/auth.json"),
                          fs::path("/d/config.json")));
}

TEST_F(AuthConfigTest, TheFirstFileWithAnEntryWins) {
  write_text(docker_file(), R"({"auths": {"reg:5000": {"auth": "YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
                                          "other.io": {"auth": "a2lsbjpzM2NyZXQ="}}})");
  write_text(podman_file(), R"({"auths": {"reg:5000": {"auth": "a2lsbjpzM2NyZXQ="}}})");
  EXPECT_TRUE(same(find_credentials("reg:5000", std::nullopt), "kiln", "s3cret"));
  // Only the docker config knows other.io; the password keeps its colons.
  EXPECT_TRUE(same(find_credentials("other.io", std::nullopt), "kiln", "s3cret"));
  fs::remove(podman_file());
  EXPECT_TRUE(same(find_credentials("reg:5000", std::nullopt), "alice", "pw:with:colons"));
  EXPECT_FALSE(find_credentials("unknown.io", std::nullopt));
  // An explicit file is the only one read.
  fs::path explicit_file = dir_.path() / "mine.json";
  write_text(explicit_file, R"({"auths": {}})");
  EXPECT_FALSE(find_credentials("reg:5000", explicit_file));
}

TEST_F(AuthConfigTest, ReadsTheEntryFormsDockerAndPodmanWrite) {
  write_text(docker_file(), R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "a2lsbjpzM2NyZXQ="},
      "fields.io": {"username": "u", "password": "p"},
      "oauth.io": {"auth": "", "identitytoken": "refresh-me"},
      "quay.io/some-org": {"auth": "a2lsbjpzM2NyZXQ="},
      "helper.io": {}
    }
  })");
  EXPECT_TRUE(same(find_credentials("docker.io", std::nullopt), "kiln", "s3cret"));
  EXPECT_TRUE(same(find_credentials("fields.io", std::nullopt), "u", "p"));
  EXPECT_TRUE(same(find_credentials("oauth.io", std::nullopt), "<token>", "refresh-me"));
  // Entries for one namespace of a registry are not credentials for all of it.
  EXPECT_FALSE(find_credentials("quay.io", std::nullopt));
  EXPECT_FALSE(find_credentials("helper.io", std::nullopt));
}

TEST_F(AuthConfigTest, AMalformedFileIsNamed) {
  write_text(podman_file(), "{not json");
  try {
    find_credentials("reg:5000", std::nullopt);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(podman_file().string()));
  }
  write_text(podman_file(), R"({"auths": {"reg:5000": {"auth": "bm8gY29sb24="}}})");
  try {
    find_credentials("reg:5000", std::nullopt);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not base64 of \"user:password\""));
  }
}

TEST_F(AuthConfigTest, LoginWritesThePodmanFileFirstThatApplies) {
  EXPECT_EQ(login_file(std::nullopt), podman_file());
  EXPECT_EQ(login_file(fs::path("/x/a.json")), fs::path("/x/a.json"));
  {
    ScopedEnv file("REGISTRY_AUTH_FILE", "/y/auth.json");
    EXPECT_EQ(login_file(std::nullopt), fs::path("/y/auth.json"));
  }
  ScopedEnv no_runtime("XDG_RUNTIME_DIR", std::nullopt);
  EXPECT_EQ(login_file(std::nullopt), config_file());
}

TEST_F(AuthConfigTest, LoginAndLogoutKeepEverythingElseAndMode0600) {
  fs::path file = podman_file();
  write_text(file, R"({"auths": {"keep.io": {"auth": "YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
                                 "reg:5000": {"auth": "eDp5", "email": "kept@example.com"}},
                       "credHelpers": {"gcr.io": "gcloud"}})");
  ::chmod(file.c_str(), 0644);
  store_credentials(file, "https://reg:5000/v2/", {"kiln", "s3cret"});

  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto json = nlohmann::json::parse(read_file(file));
  EXPECT_EQ(json["auths"]["reg:5000"]["auth"], "a2lsbjpzM2NyZXQ=");
  EXPECT_EQ(json["auths"]["reg:5000"]["email"], "kept@example.com");
  EXPECT_EQ(json["auths"]["keep.io"]["auth"], "YWxpY2U6cHc6d2l0aDpjb2xvbnM=");
  EXPECT_EQ(json["credHelpers"]["gcr.io"], "gcloud");
  EXPECT_TRUE(same(find_credentials("reg:5000", std::nullopt), "kiln", "s3cret"));

  EXPECT_TRUE(remove_credentials(file, "reg:5000"));
  EXPECT_FALSE(remove_credentials(file, "reg:5000"));
  EXPECT_FALSE(find_credentials("reg:5000", std::nullopt));
  json = nlohmann::json::parse(read_file(file));
  EXPECT_TRUE(json["auths"].contains("keep.io"));
  EXPECT_EQ(json["credHelpers"]["gcr.io"], "gcloud");

  EXPECT_EQ(remove_all_credentials(file), 1u);
  json = nlohmann::json::parse(read_file(file));
  EXPECT_TRUE(json["auths"].empty());
  EXPECT_EQ(json["credHelpers"]["gcr.io"], "gcloud");
}

TEST_F(AuthConfigTest, LoginCreatesTheFileAndItsDirectory) {
  fs::path file = dir_.path() / "new" / "dir" / "auth.json";
  store_credentials(file, "docker.io", {"kiln", "s3cret"});
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(file.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(same(find_credentials("docker.io", file), "kiln", "s3cret"));
  EXPECT_EQ(encode_basic_auth({"kiln", "s3cret"}), "a2lsbjpzM2NyZXQ=");
  EXPECT_FALSE(remove_credentials(dir_.path() / "absent.json", "docker.io"));
}

}  // namespace
}  // namespace kiln::oci

namespace kiln::oci {
namespace {

// Credential helpers: scripts on a PATH of the test's own, as docker-credential-pass or -ecr-login
// would be. "kilntest" knows reg.example:5000; "kilnstore" knows other.example and says "not
// found" for the rest; "kilnbroken" fails.
class CredentialHelperTest : public AuthConfigTest {
 protected:
  void SetUp() override {
    fs::path bin = dir_.path() / "bin";
    write_helper(bin / "docker-credential-kilntest",
                 "read server\n[ \"$1\" = get ] || exit 3\n"
                 "echo \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helper-user\\\","
                 "\\\"Secret\\\":\\\"helper-secret\\\"}\"\n");
    write_helper(bin / "docker-credential-kilnstore",
                 "read server\nif [ \"$server\" = other.example ]; then\n"
                 "  echo '{\"ServerURL\":\"other.example\",\"Username\":\"<token>\","
                 "\"Secret\":\"id-token\"}'\nelse\n"
                 "  echo 'credentials not found in native keychain'; exit 1\nfi\n");
    write_helper(bin / "docker-credential-kilnbroken",
                 "echo 'the keyring is locked' >&2; exit 2\n");
    path_ = std::make_unique<ScopedEnv>(
        "PATH", bin.string() + ":" + std::string(std::getenv("PATH") ? std::getenv("PATH") : ""));
  }
  static void write_helper(const fs::path& path, const std::string& body) {
    write_text(path, "#!/bin/sh\n" + body);
    fs::permissions(path, fs::perms::owner_all);
  }
  std::unique_ptr<ScopedEnv> path_;
};

TEST_F(CredentialHelperTest, CredHelpersThenAuthsThenCredsStore) {
  write_text(docker_file(), R"({
    "credHelpers": {"reg.example:5000": "kilntest"},
    "credsStore": "kilnstore",
    "auths": {"plain.example": {"auth": "cGxhaW46cHc="}}
  })");
  EXPECT_TRUE(
      same(find_credentials("reg.example:5000", std::nullopt), "helper-user", "helper-secret"));
  EXPECT_TRUE(same(find_credentials("plain.example", std::nullopt), "plain", "pw"));
  EXPECT_TRUE(same(find_credentials("other.example", std::nullopt), "<token>", "id-token"));
  EXPECT_FALSE(find_credentials("nobody.example", std::nullopt));
}

TEST_F(CredentialHelperTest, AFailingOrMissingHelperIsNamed) {
  write_text(docker_file(), R"({"credHelpers": {"reg.example": "kilnbroken"}})");
  try {
    find_credentials("reg.example", std::nullopt);
    FAIL() << "a broken helper went unnoticed";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("docker-credential-kilnbroken"));
    EXPECT_THAT(e.what(), HasSubstr("the keyring is locked"));
  }
  write_text(docker_file(), R"({"credsStore": "kilnmissing"})");
  try {
    find_credentials("reg.example", std::nullopt);
    FAIL() << "a missing helper went unnoticed";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("kilnmissing"));
  }
}

}  // namespace
}  // namespace kiln::oci
