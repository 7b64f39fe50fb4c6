// One executor per op kind. An executor owns two things about its ops: what their cache keys
// are made of besides the op's definition and the state before it (inputs()), and how they run
// (run()). Executors hold no state of their own; everything shared lives in BuildEnv.
#pragma once

#include <nlohmann/json.hpp>

#include "build_env.hpp"
#include "explain.hpp"
#include "kiln/frontend/op_graph.hpp"

namespace kiln::solver {

// One op being run in a stage.
struct Step {
  BuildEnv& env;
  const frontend::Op& op;
  const frontend::GraphStage& stage;
  StageState& state;  // the state before the op; run() changes it
  size_t id = 0;      // progress step id
  // When set, inputs() also lists the context files of each input it digests (explain.hpp).
  InputListings* listings = nullptr;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // What the op reads besides the state it continues (cache_key.hpp). May throw kiln::Error
  // (the caller adds the op's position).
  virtual nlohmann::ordered_json inputs(Step& step) = 0;
  // Runs the op on step.state: config, layers and history. Throws kiln::InputError at the op's
  // position or kiln::Error.
  virtual void run(Step& step) = 0;
};

// The executor for an exec, file or config op.
Executor& executor_for(const frontend::Op& op);
Executor& exec_executor();
Executor& file_executor();
Executor& config_executor();

// The source side of a stage: its state before its first op (scratch, an image, or a copy of
// another stage's result) and the key of that state.
void start_stage(BuildEnv& env, StageState& st, const frontend::GraphStage& stage);

}  // namespace kiln::solver
