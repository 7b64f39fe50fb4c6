// The source side of a stage: the state it starts from — scratch for its platform, an image
// (resolved through the build's ImageSource), or another stage's result — and that state's key.
#include "cache_key.hpp"
#include "executors.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {

void start_stage(BuildEnv& env, StageState& st, const frontend::GraphStage& stage) {
  const frontend::Op& base = env.graph->ops.at(stage.base);
  const auto* source = base.as<frontend::SourceOp>();
  if (source && source->kind == frontend::SourceOp::Kind::kScratch) {
    st.config.os = stage.platform.os;
    st.config.architecture = stage.platform.architecture;
    st.config.variant = stage.platform.variant;
    st.key = scratch_key(env.salt, stage.platform);
    st.base = "scratch";
  } else if (source && source->kind == frontend::SourceOp::Kind::kImage) {
    oci::ResolvedImage image = env.image(source->image, source->platform);
    st.config = image.config;
    st.layers = image.parsed.layers;
    if (st.layers.size() != st.config.diff_ids.size()) {
      throw Error("image " + source->image + ": its config lists " +
                  std::to_string(st.config.diff_ids.size()) + " layers but its manifest has " +
                  std::to_string(st.layers.size()));
    }
    // The base's triggers ran (they are ops of this stage); they are not inherited.
    st.config.config.on_build.clear();
    st.key = image_key(env.salt, image.manifest.digest, source->platform);
    st.base = "image " + source->image + "@" + image.manifest.digest.str();
  } else if (source) {
    throw Error(
        "internal: a stage cannot start from a " +
        std::string(source->kind == frontend::SourceOp::Kind::kContext ? "context" : "directory"));
  } else {
    std::shared_ptr<StageState> from = env.finished(stage.base);
    st.config = from->config;
    // Its ONBUILD triggers ran as ops of this stage (build_plan.hpp); they are not inherited.
    st.config.config.on_build.clear();
    st.layers = from->layers;
    st.key = stage_base_key(from->key);
    st.base = "stage " + stage.base_name;
  }
  if (!env.request.inherit_labels)
    st.config.config.labels.clear();
  st.base_layers = st.layers.size();
  // BuildKit writes "/" for an image without a working directory.
  if (st.config.config.working_dir.empty())
    st.config.config.working_dir = "/";
  if (!has_env(st.config.config.env, "PATH"))
    set_env(st.config.config.env, "PATH", kDefaultPath);
}

}  // namespace kiln::solver
