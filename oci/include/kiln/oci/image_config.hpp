// The image config blob (OCI image-spec config.md), with the Docker extensions BuildKit and
// Docker write into it (Healthcheck, OnBuild, Shell; Docker image spec v1.2).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/digest.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::oci {

// HEALTHCHECK. Durations are nanoseconds, as Go's time.Duration is serialised; 0 means "inherit
// the default". test is e.g. {"CMD-SHELL", "curl -f localhost"} or {"NONE"}.
struct HealthConfig {
  std::vector<std::string> test;
  int64_t interval = 0, timeout = 0, start_period = 0, start_interval = 0;
  int retries = 0;

  friend bool operator==(const HealthConfig&, const HealthConfig&) = default;
};

// The runtime defaults of containers started from the image ("config" in the JSON).
struct ContainerConfig {
  std::string user;
  std::set<std::string> exposed_ports;  // "80/tcp"
  std::vector<std::string> env;         // "KEY=value"
  // nullopt = not set (inherit/none); an empty vector is an explicit `CMD []` and differs.
  std::optional<std::vector<std::string>> entrypoint, cmd;
  std::set<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  std::optional<HealthConfig> healthcheck;
  std::vector<std::string> on_build;
  std::optional<std::vector<std::string>> shell;
  bool args_escaped = false;

  friend bool operator==(const ContainerConfig&, const ContainerConfig&) = default;
};

struct HistoryEntry {
  std::string created;  // RFC 3339
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;  // true when the step made no layer (ENV, CMD, ...)

  friend bool operator==(const HistoryEntry&, const HistoryEntry&) = default;
};

struct ImageConfig {
  std::string created;  // RFC 3339, e.g. format_rfc3339(SOURCE_DATE_EPOCH); empty = omitted
  std::string author;
  std::string architecture;
  std::string os;
  std::string variant;
  std::string os_version;  // "os.version"
  ContainerConfig config;
  std::vector<Digest> diff_ids;  // rootfs.diff_ids: uncompressed layer digests, base first
  std::vector<HistoryEntry> history;
  // Top-level fields kiln does not model ("container_config", "docker_version", "os.features",
  // ...), kept so that parse + serialize does not lose them. Null or an object. Fields inside
  // "config", "rootfs" and history entries that kiln does not model are dropped.
  nlohmann::json unknown;

  friend bool operator==(const ImageConfig&, const ImageConfig&) = default;
};

// The canonical bytes of the config, whose sha256 is the image ID. Keys in a fixed order:
// created, author, architecture, os, os.version, variant, config{User, ExposedPorts, Env,
// Entrypoint, Cmd, Volumes, WorkingDir, Labels, StopSignal, ArgsEscaped, Healthcheck, OnBuild,
// Shell}, rootfs{type, diff_ids}, history[{created, created_by, author, comment, empty_layer}],
// then the unknown fields sorted by key (those that collide with a modelled key are skipped).
// Empty optional fields are omitted as Docker/BuildKit omit them; architecture, os, config,
// rootfs (with diff_ids) are always written; an engaged but empty Entrypoint/Cmd/Shell is written
// as []. Same value, same bytes. Throws kiln::Error when a diff ID is unset, unknown is neither
// null nor an object, or a string is not valid UTF-8.
std::string serialize(const ImageConfig& config);

// Parses an OCI or Docker image config. Unknown fields are tolerated (top-level ones go to
// `unknown`), null counts as absent, a string Entrypoint/Cmd/Shell (old Docker) becomes a
// one-element list. Throws kiln::Error naming the field when the text is not a JSON object, a
// field has the wrong type, a diff ID is not a valid digest or rootfs.type is not "layers".
ImageConfig parse_image_config(std::string_view json);

// The config's os/architecture/variant as recorded (not normalised; call normalize() before
// comparing with a requested platform).
Platform platform_of(const ImageConfig& config);

// The OCI chain ID of a layer chain, base first (image-spec config.md): ChainID(L0) =
// DiffID(L0), ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)). An empty Digest
// (valid() is false) for an empty chain.
Digest chain_id(const std::vector<Digest>& diff_ids);

// UTC RFC 3339 with second precision: format_rfc3339(0) == "1970-01-01T00:00:00Z". Throws
// kiln::Error when the year falls outside 0000..9999, which RFC 3339 cannot express.
std::string format_rfc3339(int64_t unix_seconds);

}  // namespace kiln::oci
