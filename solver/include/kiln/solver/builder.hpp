// Runs a BuildPlan: every stage the target needs, in dependency order, producing an image (config
// + layers in the store) for the target stage.
//
// The builder knows no Containerfile syntax: it executes plan ops. COPY and ADD become layers
// (through snapshotter::write_layer into the store); metadata instructions change the image
// config and add history entries the way BuildKit writes them. Each stage keeps an unpacked
// root filesystem (base layers applied, then each new layer) for what needs to look at files:
// COPY --from, --chown names, parent directories of destinations, WORKDIR.
// Not thread-safe: one build per Builder.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::solver {

struct BuildRequest {
  std::filesystem::path context;             // the build context directory
  frontend::IgnoreMatcher ignore;            // rules for the context
  oci::Platform platform;                    // the target platform
  snapshotter::LayerOptions layers;          // compression; SOURCE_DATE_EPOCH clamps file times
  std::optional<int64_t> source_date_epoch;  // also the image's "created" time
  std::vector<std::pair<std::string, std::string>> labels;  // --label, added to the final image
  std::function<void(const std::string&)> progress;         // one line per step; may be empty

  // RUN
  struct Secret {
    std::filesystem::path file;  // --secret id=ID,src=FILE
    std::string env;             // --secret id=ID,env=VAR (the variable's name)
  };
  std::map<std::string, Secret> secrets;  // by id
  std::string network = "default";        // default | none | host (RUN --network overrides)
  bool allow_insecure = false;            // --allow security.insecure
  std::string snapshotter = "auto";       // auto | overlay | copy
  std::filesystem::path cache_mounts;     // where RUN --mount=type=cache directories persist
  std::string runtime;                    // --runtime runc|crun|PATH; empty: the built-in sandbox
};

// An image that is built but not yet exported: its layers are blobs in the store.
struct BuiltImage {
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;
  std::filesystem::path rootfs;  // the unpacked filesystem (valid while the Builder lives)
};

class Builder {
 public:
  Builder(oci::Store& store, BuildRequest request);
  ~Builder();
  Builder(const Builder&) = delete;
  Builder& operator=(const Builder&) = delete;

  // Builds plan.order and returns the target stage's image. Throws kiln::InputError at the op's
  // Containerfile position when an op fails (missing COPY source, unknown --chown user, RUN while
  // the runner is not available, ...), kiln::Error for store or I/O failures.
  BuiltImage build(const frontend::BuildPlan& plan);

  // The base-image callback for frontend::plan_build: resolves (and imports) FROM images so the
  // plan can see their ENV and ONBUILD triggers.
  frontend::BaseImage base_image(const std::string& ref, const oci::Platform& platform);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The time an image's "created" field and new history entries get: SOURCE_DATE_EPOCH when set,
// else now. RFC 3339, UTC.
std::string build_timestamp(const std::optional<int64_t>& source_date_epoch);

}  // namespace kiln::solver
