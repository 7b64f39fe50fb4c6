// --cert-dir against a registry that speaks only HTTPS and wants a client certificate
// (docker-registry with a test CA, tests/support/registry_fixture.hpp): with the directory the
// push succeeds and skopeo reads the image back; without it, or with a CA that did not sign the
// registry's certificate, the push fails and says why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(RegistryTls, CertDirGivesTheCaAndTheClientCertificate) {
  TempDir work;
  LocalRegistry registry(RegistryAuth::kClientCert);
  fs::path ctx = work.path() / "ctx";
  write(ctx / "Containerfile", "FROM scratch\nCOPY a.txt /\n");
  write(ctx / "a.txt", "a\n");
  std::string ref = registry.host() + "/tls/app:1";
  auto push = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"build", "--push", "-t", ref};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx.string());
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (work.path() / "store").string()});
  };

  ProcessResult without = push({});
  EXPECT_NE(without.exit_code, 0);
  EXPECT_THAT(without.err, HasSubstr(registry.host()));

  // A CA that did not sign the registry's certificate: verified (even on loopback) and refused.
  fs::path wrong = work.path() / "wrong";
  fs::create_directories(wrong);
  ASSERT_EQ(run_program({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                         (work.path() / "wrong.key").string(), "-out", (wrong / "ca.crt").string(),
                         "-days", "2", "-subj", "/CN=wrong-ca"})
                .exit_code,
            0);
  fs::copy_file(registry.cert_dir() / "client.cert", wrong / "client.cert");
  fs::copy_file(registry.cert_dir() / "client.key", wrong / "client.key");
  ProcessResult wrong_ca = push({"--cert-dir", wrong.string()});
  EXPECT_NE(wrong_ca.exit_code, 0);
  EXPECT_THAT(wrong_ca.err, HasSubstr("certificate"));

  ProcessResult with = push({"--cert-dir", registry.cert_dir().string()});
  ASSERT_EQ(with.exit_code, 0) << with.err << registry.logs();
  ProcessResult raw = run_program({"skopeo", "inspect", "--raw", "--cert-dir",
                                   registry.cert_dir().string(), "docker://" + ref});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_THAT(raw.out, HasSubstr("\"layers\""));

  // A client certificate without its key is named.
  fs::path half = work.path() / "half";
  fs::create_directories(half);
  fs::copy_file(registry.cert_dir() / "client.cert", half / "client.cert");
  ProcessResult no_key = push({"--cert-dir", half.string()});
  EXPECT_NE(no_key.exit_code, 0);
  EXPECT_THAT(no_key.err, HasSubstr("has no key"));
}

}  // namespace
}  // namespace kiln::test
