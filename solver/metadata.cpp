#include "metadata.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/duration.hpp"

namespace kiln::solver {

using frontend::InstructionKind;

namespace {

constexpr const char* kHistoryComment = "buildkit.dockerfile.v0";

// "80" → "80/tcp"; "8000-8002/udp" → three ports.
std::vector<std::string> expand_ports(const std::string& spec, const SourceLocation& where) {
  std::string port = spec;
  std::string proto = "tcp";
  if (size_t slash = spec.find('/'); slash != std::string::npos) {
    port = spec.substr(0, slash);
    proto = to_lower(spec.substr(slash + 1));
  }
  if (proto != "tcp" && proto != "udp" && proto != "sctp") {
    throw InputError(where, "invalid EXPOSE protocol " + quote(proto) + " (use tcp, udp or sctp)");
  }
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 5 ||
        std::stoi(s) > 65535) {
      throw InputError(where, "invalid port " + quote(spec) + " in EXPOSE");
    }
    return std::stoi(s);
  };
  std::vector<std::string> out;
  if (size_t dash = port.find('-'); dash != std::string::npos) {
    int first = number(port.substr(0, dash));
    int last = number(port.substr(dash + 1));
    if (last < first)
      throw InputError(where, "invalid port range " + quote(spec) + " in EXPOSE");
    for (int p = first; p <= last; ++p)
      out.push_back(std::to_string(p) + "/" + proto);
  } else {
    out.push_back(std::to_string(number(port)) + "/" + proto);
  }
  return out;
}

bool valid_signal(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
    int n = std::stoi(s);
    return n > 0 && n <= 64;
  }
  std::string name = to_upper(s);
  if (starts_with(name, "SIG"))
    name = name.substr(3);
  if (starts_with(name, "RTMIN") || starts_with(name, "RTMAX"))
    return true;
  for (const char* known :
       {"ABRT", "ALRM",   "BUS",  "CHLD",   "CLD",   "CONT", "FPE",  "HUP",   "ILL",
        "INT",  "IO",     "IOT",  "KILL",   "PIPE",  "POLL", "PROF", "PWR",   "QUIT",
        "SEGV", "STKFLT", "STOP", "SYS",    "TERM",  "TRAP", "TSTP", "TTIN",  "TTOU",
        "URG",  "USR1",   "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED"}) {
    if (name == known)
      return true;
  }
  return false;
}

// HEALTHCHECK durations were validated by the parser; absent flags are 0 (the engine default).
int64_t duration_flag(const frontend::Op& op, const char* name) {
  for (const frontend::Flag& f : op.flags) {
    if (f.name == name && f.value)
      return frontend::parse_go_duration(*f.value).value_or(0);
  }
  return 0;
}

}  // namespace

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  for (std::string& entry : env) {
    if (entry.compare(0, key.size() + 1, key + "=") == 0) {
      entry = key + "=" + value;
      return;
    }
  }
  env.push_back(key + "=" + value);
}

bool has_env(const std::vector<std::string>& env, const std::string& key) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) {
    return e.compare(0, key.size() + 1, key + "=") == 0;
  });
}

std::vector<std::string> shell_of(const oci::ImageConfig& config) {
  if (config.config.shell && !config.config.shell->empty())
    return *config.config.shell;
  return {"/bin/sh", "-c"};
}

// CMD/ENTRYPOINT/HEALTHCHECK command from exec or shell form.
std::vector<std::string> command_of(const frontend::Op& op, const oci::ImageConfig& config) {
  if (op.json_form)
    return op.args;
  std::vector<std::string> cmd = shell_of(config);
  if (!op.args.empty())
    cmd.push_back(op.args.front());
  return cmd;
}

std::string json_array(const std::vector<std::string>& items) {
  nlohmann::json j = items;
  return j.dump();
}

bool is_metadata(InstructionKind kind) {
  switch (kind) {
    case InstructionKind::kEnv:
    case InstructionKind::kLabel:
    case InstructionKind::kMaintainer:
    case InstructionKind::kExpose:
    case InstructionKind::kVolume:
    case InstructionKind::kUser:
    case InstructionKind::kStopsignal:
    case InstructionKind::kShell:
    case InstructionKind::kCmd:
    case InstructionKind::kEntrypoint:
    case InstructionKind::kHealthcheck:
    case InstructionKind::kOnbuild:
      return true;
    default:
      return false;
  }
}

void add_history(ImageState& st, const std::string& created, const std::string& created_by,
                 bool empty_layer) {
  oci::HistoryEntry h;
  h.created = created;
  h.created_by = created_by;
  h.comment = kHistoryComment;
  h.empty_layer = empty_layer;
  st.config.history.push_back(std::move(h));
}

void apply_metadata(ImageState& st, const frontend::Op& op, const std::string& created) {
  oci::ContainerConfig& c = st.config.config;
  auto history = [&](ImageState& s, const std::string& by, bool empty) {
    add_history(s, created, by, empty);
  };
  auto created_by = [](const frontend::Op& o) {
    return o.instruction ? o.instruction->text : std::string(frontend::keyword_of(o.kind));
  };
  switch (op.kind) {
    case InstructionKind::kEnv:
      for (const frontend::KeyValue& kv : op.pairs)
        set_env(c.env, kv.key, kv.value.value_or(""));
      history(st, created_by(op), true);
      return;
    case InstructionKind::kLabel:
      for (const frontend::KeyValue& kv : op.pairs)
        c.labels[kv.key] = kv.value.value_or("");
      history(st, created_by(op), true);
      return;
    case InstructionKind::kMaintainer:
      st.config.author = op.args.front();
      history(st, created_by(op), true);
      return;
    case InstructionKind::kExpose:
      for (const std::string& port : op.args) {
        for (const std::string& p : expand_ports(port, op.where))
          c.exposed_ports.insert(p);
      }
      history(st, created_by(op), true);
      return;
    case InstructionKind::kVolume:
      for (const std::string& v : op.args)
        c.volumes.insert(v);
      history(st, created_by(op), true);
      return;
    case InstructionKind::kUser:
      c.user = op.args.front();
      history(st, created_by(op), true);
      return;
    case InstructionKind::kStopsignal:
      if (!valid_signal(op.args.front())) {
        throw InputError(op.where, "invalid STOPSIGNAL " + quote(op.args.front()));
      }
      c.stop_signal = op.args.front();
      history(st, created_by(op), true);
      return;
    case InstructionKind::kShell:
      c.shell = op.args;
      history(st, created_by(op), true);
      return;
    case InstructionKind::kCmd:
      c.cmd = command_of(op, st.config);
      st.cmd_set = true;
      history(st, "CMD " + json_array(*c.cmd), true);
      return;
    case InstructionKind::kEntrypoint:
      c.entrypoint = command_of(op, st.config);
      if (!st.cmd_set)
        c.cmd.reset();  // an inherited CMD does not fit a new ENTRYPOINT
      history(st, "ENTRYPOINT " + json_array(*c.entrypoint), true);
      return;
    case InstructionKind::kHealthcheck: {
      oci::HealthConfig health;
      if (op.instruction->health_type == "NONE") {
        health.test = {"NONE"};
      } else if (op.json_form) {
        health.test = {"CMD"};
        health.test.insert(health.test.end(), op.args.begin(), op.args.end());
      } else {
        health.test = {"CMD-SHELL", op.args.front()};
      }
      health.interval = duration_flag(op, "interval");
      health.timeout = duration_flag(op, "timeout");
      health.start_period = duration_flag(op, "start-period");
      health.start_interval = duration_flag(op, "start-interval");
      for (const frontend::Flag& f : op.flags) {
        if (f.name == "retries" && f.value)
          health.retries = std::stoi(*f.value);
      }
      c.healthcheck = health;
      history(st, created_by(op), true);
      return;
    }
    case InstructionKind::kOnbuild:
      c.on_build.push_back(op.instruction->trigger.front().text);
      history(st, created_by(op), true);
      return;
    default:
      throw Error(std::string("not a metadata instruction: ") + frontend::keyword_of(op.kind));
  }
}

}  // namespace kiln::solver
