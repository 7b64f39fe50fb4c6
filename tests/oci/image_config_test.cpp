#include "kiln/oci/image_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln::oci {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string hex_of(char c) {
  return std::string(64, c);
}
Digest digest_of(char c) {
  return Digest::parse("sha256:" + hex_of(c));
}

// Shaped like a config the classic Docker builder writes: container_config and friends, "Cmd":
// null because the Dockerfile set an ENTRYPOINT, Go's nil maps as null.
std::string docker_config() {
  return R"({
  "architecture": "amd64",
  "config": {
    "Hostname": "", "Domainname": "", "User": "nginx", "AttachStdin": false, "Tty": false,
    "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25.3"],
    "Cmd": null,
    "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                    "Interval": 30000000000, "Timeout": 5000000000, "StartPeriod": 10000000000,
                    "StartInterval": 1000000000, "Retries": 3},
    "ArgsEscaped": true,
    "Image": "sha256:)" +
         hex_of('9') + R"(",
    "Volumes": {"/var/cache/nginx": {}},
    "WorkingDir": "/srv",
    "Entrypoint": ["/docker-entrypoint.sh"],
    "OnBuild": ["COPY . /app", "RUN make"],
    "Labels": {"maintainer": "NGINX Docker Maintainers", "org.example.empty": ""},
    "StopSignal": "SIGQUIT",
    "Shell": ["/bin/bash", "-o", "pipefail", "-c"]
  },
  "container": "0123456789abcdef",
  "container_config": {"Hostname": "0123456789ab", "Cmd": ["/bin/sh", "-c", "#(nop) ", "STOPSIGNAL SIGQUIT"]},
  "created": "2024-01-02T03:04:05.123456789Z",
  "docker_version": "20.10.23",
  "history": [
    {"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
    {"created": "2024-01-01T00:00:01Z", "created_by": "/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", "empty_layer": true},
    {"created": "2024-01-02T03:04:05Z", "created_by": "RUN make", "author": "me", "comment": "buildkit.dockerfile.v0", "empty_layer": false}
  ],
  "os": "linux",
  "rootfs": {"type": "layers", "diff_ids": ["sha256:)" +
         hex_of('1') + R"(", "sha256:)" + hex_of('2') + R"("]}
})";
}

TEST(ImageConfig, ParsesDockerConfig) {
  ImageConfig c = parse_image_config(docker_config());
  EXPECT_EQ(c.architecture, "amd64");
  EXPECT_EQ(c.os, "linux");
  EXPECT_EQ(c.created, "2024-01-02T03:04:05.123456789Z");
  const ContainerConfig& cc = c.config;
  EXPECT_EQ(cc.user, "nginx");
  EXPECT_EQ(cc.exposed_ports, (std::set<std::string>{"443/tcp", "80/tcp"}));
  ASSERT_EQ(cc.env.size(), 2u);
  EXPECT_EQ(cc.env[1], "NGINX_VERSION=1.25.3");
  EXPECT_FALSE(cc.cmd.has_value());  // null is "not set", not an empty command
  EXPECT_EQ(cc.entrypoint, (std::vector<std::string>{"/docker-entrypoint.sh"}));
  EXPECT_EQ(cc.volumes, (std::set<std::string>{"/var/cache/nginx"}));
  EXPECT_EQ(cc.working_dir, "/srv");
  EXPECT_EQ(cc.labels.at("maintainer"), "NGINX Docker Maintainers");
  EXPECT_EQ(cc.labels.at("org.example.empty"), "");
  EXPECT_EQ(cc.stop_signal, "SIGQUIT");
  EXPECT_TRUE(cc.args_escaped);
  ASSERT_TRUE(cc.healthcheck.has_value());
  EXPECT_EQ(cc.healthcheck->test,
            (std::vector<std::string>{"CMD-SHELL", "curl -f http://localhost/ || exit 1"}));
  EXPECT_EQ(cc.healthcheck->interval, 30'000'000'000);
  EXPECT_EQ(cc.healthcheck->timeout, 5'000'000'000);
  EXPECT_EQ(cc.healthcheck->start_period, 10'000'000'000);
  EXPECT_EQ(cc.healthcheck->start_interval, 1'000'000'000);
  EXPECT_EQ(cc.healthcheck->retries, 3);
  EXPECT_EQ(cc.on_build, (std::vector<std::string>{"COPY . /app", "RUN make"}));
  EXPECT_EQ(cc.shell, (std::vector<std::string>{"/bin/bash", "-o", "pipefail", "-c"}));
  EXPECT_EQ(c.diff_ids, (std::vector<Digest>{digest_of('1'), digest_of('2')}));
  ASSERT_EQ(c.history.size(), 3u);
  EXPECT_FALSE(c.history[0].empty_layer);
  EXPECT_TRUE(c.history[1].empty_layer);
  EXPECT_EQ(c.history[2].author, "me");
  EXPECT_EQ(c.history[2].comment, "buildkit.dockerfile.v0");
  // Top-level fields kiln does not model are kept; modelled ones are not duplicated there.
  EXPECT_EQ(c.unknown.at("docker_version"), "20.10.23");
  EXPECT_EQ(c.unknown.at("container"), "0123456789abcdef");
  EXPECT_TRUE(c.unknown.at("container_config").is_object());
  EXPECT_FALSE(c.unknown.contains("config"));
  EXPECT_FALSE(c.unknown.contains("os"));
  EXPECT_EQ(platform_of(c), (Platform{"linux", "amd64", ""}));
}

TEST(ImageConfig, RoundTripKeepsUnknownFieldsAndIsStable) {
  ImageConfig c = parse_image_config(docker_config());
  std::string bytes = serialize(c);
  EXPECT_EQ(parse_image_config(bytes), c);
  EXPECT_EQ(serialize(parse_image_config(bytes)), bytes);
  EXPECT_THAT(bytes, HasSubstr(R"("docker_version":"20.10.23")"));
  // Container fields kiln does not model ("Hostname", "Image") are dropped from "config".
  EXPECT_THAT(bytes, Not(HasSubstr(R"("Image")")));
  EXPECT_THAT(bytes, Not(HasSubstr(R"("Cmd":null)")));
  EXPECT_THAT(
      bytes,
      HasSubstr(R"("Healthcheck":{"Test":["CMD-SHELL","curl -f http://localhost/ || exit 1"],)"
                R"("Interval":30000000000,"Timeout":5000000000,"StartPeriod":10000000000,)"
                R"("StartInterval":1000000000,"Retries":3})"));
}

ImageConfig sample() {
  ImageConfig c;
  c.created = "2024-01-02T03:04:05Z";
  c.author = "kiln";
  c.architecture = "arm";
  c.os = "linux";
  c.variant = "v7";
  c.config.user = "1000:1000";
  c.config.exposed_ports = {"8080/tcp"};
  c.config.env = {"PATH=/bin", "A=1"};
  c.config.entrypoint = std::vector<std::string>{"/app"};
  c.config.cmd = std::vector<std::string>{"--serve"};
  c.config.volumes = {"/data"};
  c.config.working_dir = "/work";
  c.config.labels = {{"b", "2"}, {"a", "1"}};
  c.config.stop_signal = "SIGTERM";
  c.config.args_escaped = true;
  c.config.healthcheck = HealthConfig{{"NONE"}, 0, 0, 0, 0, 0};
  c.config.on_build = {"RUN true"};
  c.config.shell = std::vector<std::string>{"/bin/sh", "-c"};
  c.diff_ids = {digest_of('a')};
  c.history = {{"2024-01-02T03:04:05Z", "RUN x", "", "", false},
               {"2024-01-02T03:04:05Z", "CMD [\"--serve\"]", "", "buildkit.dockerfile.v0", true}};
  return c;
}

TEST(ImageConfig, SerializesInFixedOrder) {
  EXPECT_EQ(
      serialize(sample()),
      R"({"created":"2024-01-02T03:04:05Z","author":"kiln","architecture":"arm","os":"linux",)"
      R"("variant":"v7","config":{"User":"1000:1000","ExposedPorts":{"8080/tcp":{}},)"
      R"("Env":["PATH=/bin","A=1"],"Entrypoint":["/app"],"Cmd":["--serve"],"Volumes":{"/data":{}},)"
      R"("WorkingDir":"/work","Labels":{"a":"1","b":"2"},"StopSignal":"SIGTERM","ArgsEscaped":true,)"
      R"("Healthcheck":{"Test":["NONE"]},"OnBuild":["RUN true"],"Shell":["/bin/sh","-c"]},)"
      R"("rootfs":{"type":"layers","diff_ids":["sha256:)" +
          hex_of('a') +
          R"("]},"history":[{"created":"2024-01-02T03:04:05Z","created_by":"RUN x"},)"
          R"({"created":"2024-01-02T03:04:05Z","created_by":"CMD [\"--serve\"]",)"
          R"("comment":"buildkit.dockerfile.v0","empty_layer":true}]})");
  EXPECT_EQ(parse_image_config(serialize(sample())), sample());
}

TEST(ImageConfig, MinimalConfigKeepsRequiredFields) {
  ImageConfig c;
  c.architecture = "amd64";
  c.os = "linux";
  EXPECT_EQ(
      serialize(c),
      R"({"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}})");
  EXPECT_EQ(parse_image_config(serialize(c)), c);
  c.os_version = "10.0.20348.2340";
  EXPECT_THAT(serialize(c), HasSubstr(R"("os":"linux","os.version":"10.0.20348.2340","config")"));
}

TEST(ImageConfig, EmptyCommandDiffersFromUnset) {
  ImageConfig c = sample();
  c.config.cmd = std::vector<std::string>{};
  c.config.entrypoint.reset();
  std::string bytes = serialize(c);
  EXPECT_THAT(bytes, HasSubstr(R"("Cmd":[])"));
  EXPECT_THAT(bytes, Not(HasSubstr("Entrypoint")));
  ImageConfig back = parse_image_config(bytes);
  ASSERT_TRUE(back.config.cmd.has_value());
  EXPECT_TRUE(back.config.cmd->empty());
  EXPECT_FALSE(back.config.entrypoint.has_value());
}

TEST(ImageConfig, Deterministic) {
  // The same logical config built in a different order gives the same bytes and image ID.
  ImageConfig a = sample();
  ImageConfig b = sample();
  b.config.labels.clear();
  b.config.labels["b"] = "2";
  b.config.labels["a"] = "1";
  b.config.exposed_ports = {"8080/tcp"};
  b.unknown["zeta"] = 1;
  b.unknown["alpha"] = nlohmann::json::object({{"y", 2}, {"x", 1}});
  a.unknown["alpha"] = nlohmann::json::object({{"x", 1}, {"y", 2}});
  a.unknown["zeta"] = 1;
  EXPECT_EQ(serialize(a), serialize(b));
  EXPECT_EQ(sha256_of(serialize(a)), sha256_of(serialize(b)));
  EXPECT_THAT(serialize(a), HasSubstr(R"(}],"alpha":{"x":1,"y":2},"zeta":1})"));
  // Unknown entries that collide with a modelled key cannot produce duplicate keys.
  a.unknown["os"] = "windows";
  EXPECT_EQ(serialize(a), serialize(b));
}

TEST(ImageConfig, ToleratesNullsAndOldForms) {
  ImageConfig c = parse_image_config(R"({"architecture":"arm64","os":"linux","variant":"v8",
      "config":{"Env":null,"Cmd":"/bin/sh","Entrypoint":null,"Labels":null,"ExposedPorts":null,
                "Volumes":null,"OnBuild":null,"Healthcheck":null,"Shell":null,"User":null},
      "rootfs":{"type":"layers","diff_ids":null},"history":null,"author":null})");
  EXPECT_EQ(c.config.cmd, (std::vector<std::string>{"/bin/sh"}));
  EXPECT_FALSE(c.config.entrypoint.has_value());
  EXPECT_FALSE(c.config.healthcheck.has_value());
  EXPECT_TRUE(c.diff_ids.empty());
  EXPECT_TRUE(c.unknown.is_null());
  EXPECT_EQ(platform_of(c), (Platform{"linux", "arm64", "v8"}));
  EXPECT_EQ(normalize(platform_of(c)), (Platform{"linux", "arm64", ""}));
  EXPECT_EQ(parse_image_config(R"({"config":null})").config, ContainerConfig{});
}

TEST(ImageConfig, ErrorsNameTheField) {
  EXPECT_THAT(error_of([] { parse_image_config(""); }),
              HasSubstr("invalid image config: not valid JSON: "));
  EXPECT_EQ(error_of([] { parse_image_config("\"x\""); }),
            "invalid image config: expected a JSON object, got string");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"config":{"Env":"A=1"}})"); }),
            "invalid image config: config.Env: expected an array of strings, got string");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"config":{"Env":["A=1",2]}})"); }),
            "invalid image config: config.Env[1]: expected a string, got integer");
  EXPECT_EQ(
      error_of([] { parse_image_config(R"({"config":{"Healthcheck":{"Interval":"30s"}}})"); }),
      "invalid image config: config.Healthcheck.Interval: expected an integer, got string");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"config":{"ArgsEscaped":"yes"}})"); }),
            "invalid image config: config.ArgsEscaped: expected a boolean, got string");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"config":{"ExposedPorts":["80/tcp"]}})"); }),
            "invalid image config: config.ExposedPorts: expected an object, got array");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"config":[]})"); }),
            "invalid image config: config: expected an object, got array");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"architecture":5})"); }),
            "invalid image config: architecture: expected a string, got integer");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"rootfs":{"type":"tar","diff_ids":[]}})"); }),
            "invalid image config: rootfs.type: expected \"layers\", got \"tar\"");
  EXPECT_EQ(
      error_of([] { parse_image_config(R"({"rootfs":{"type":"layers","diff_ids":["md5:x"]}})"); }),
      "invalid image config: rootfs.diff_ids[0]: \"md5:x\" is not a valid digest "
      "(expected sha256:<64 lower-case hex digits>)");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"history":[{"empty_layer":1}]})"); }),
            "invalid image config: history[0].empty_layer: expected a boolean, got integer");
  EXPECT_EQ(error_of([] { parse_image_config(R"({"history":{}})"); }),
            "invalid image config: history: expected an array, got object");

  ImageConfig c = sample();
  c.diff_ids.push_back(Digest());
  EXPECT_EQ(error_of([&] { serialize(c); }), "cannot serialize image config: diff ID 1 is unset");
  c = sample();
  c.unknown = nlohmann::json::array();
  EXPECT_EQ(error_of([&] { serialize(c); }),
            "cannot serialize image config: unknown fields must be an object, got array");
  c = sample();
  c.config.labels["x"] = "\xc3";
  EXPECT_THAT(error_of([&] { serialize(c); }), HasSubstr("not valid UTF-8"));
}

TEST(FormatRfc3339, FormatsUtcSeconds) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(1704164645), "2024-01-02T03:04:05Z");
  EXPECT_EQ(format_rfc3339(951782400), "2000-02-29T00:00:00Z");
  EXPECT_EQ(format_rfc3339(4107585600), "2100-03-01T12:00:00Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(format_rfc3339(253402300799), "9999-12-31T23:59:59Z");
  EXPECT_THAT(error_of([] { format_rfc3339(253402300800); }), HasSubstr("outside 0000..9999"));
}

TEST(ChainId, FollowsTheOciDefinition) {
  Digest a = sha256_of("a"), b = sha256_of("b"), c = sha256_of("c");
  EXPECT_EQ(chain_id({a}), a);
  Digest ab = sha256_of(a.str() + " " + b.str());
  EXPECT_EQ(chain_id({a, b}), ab);
  EXPECT_EQ(chain_id({a, b, c}), sha256_of(ab.str() + " " + c.str()));
  EXPECT_NE(chain_id({b, a}), chain_id({a, b}));
  EXPECT_FALSE(chain_id({}).valid());
}

}  // namespace
}  // namespace kiln::oci
