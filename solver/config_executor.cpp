// Config ops: changes to the image config only (ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE,
// VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER), each with an empty-layer history
// entry, as BuildKit writes them. Their values were validated when the plan was lowered.
#include "executors.hpp"

namespace kiln::solver {
namespace {

using frontend::ConfigOp;

class ConfigExecutor final : public Executor {
 public:
  nlohmann::ordered_json inputs(Step&) override { return nlohmann::ordered_json::object(); }

  void run(Step& step) override {
    const ConfigOp& op = std::get<ConfigOp>(step.op.data);
    ImageState& st = step.state;
    oci::ContainerConfig& c = st.config.config;
    std::string history = step.op.text;
    switch (op.field) {
      case ConfigOp::Field::kEnv:
        for (const auto& [key, value] : op.pairs)
          set_env(c.env, key, value);
        break;
      case ConfigOp::Field::kLabel:
        for (const auto& [key, value] : op.pairs)
          c.labels[key] = value;
        break;
      case ConfigOp::Field::kMaintainer:
        st.config.author = op.values.front();
        break;
      case ConfigOp::Field::kExpose:
        c.exposed_ports.insert(op.values.begin(), op.values.end());
        break;
      case ConfigOp::Field::kVolume:
        c.volumes.insert(op.values.begin(), op.values.end());
        break;
      case ConfigOp::Field::kUser:
        c.user = op.values.front();
        break;
      case ConfigOp::Field::kStopSignal:
        c.stop_signal = op.values.front();
        break;
      case ConfigOp::Field::kShell:
        c.shell = op.values;
        break;
      case ConfigOp::Field::kCmd:
        c.cmd = command(op, st.config);
        st.cmd_set = true;
        history = "CMD " + json_array(*c.cmd);
        break;
      case ConfigOp::Field::kEntrypoint:
        c.entrypoint = command(op, st.config);
        if (!st.cmd_set)
          c.cmd.reset();  // an inherited CMD does not fit a new ENTRYPOINT
        history = "ENTRYPOINT " + json_array(*c.entrypoint);
        break;
      case ConfigOp::Field::kHealthcheck:
        c.healthcheck = op.health;
        break;
      case ConfigOp::Field::kOnbuild:
        c.on_build.push_back(op.values.front());
        break;
    }
    add_history(st, step.env.created, history, true);
  }

 private:
  // CMD/ENTRYPOINT: exec form as it is, shell form through the stage's SHELL.
  static std::vector<std::string> command(const ConfigOp& op, const oci::ImageConfig& config) {
    if (!op.shell_form)
      return op.values;
    std::vector<std::string> cmd = shell_of(config);
    if (!op.values.empty())
      cmd.push_back(op.values.front());
    return cmd;
  }
};

}  // namespace

Executor& config_executor() {
  static ConfigExecutor executor;
  return executor;
}

Executor& executor_for(const frontend::Op& op) {
  if (op.as<frontend::ExecOp>())
    return exec_executor();
  if (op.as<frontend::FileOp>())
    return file_executor();
  return config_executor();
}

}  // namespace kiln::solver
