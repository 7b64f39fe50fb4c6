#include "kiln/frontend/op_graph.hpp"

namespace kiln::frontend {
namespace {

using Json = nlohmann::ordered_json;

const char* source_kind(SourceOp::Kind kind) {
  switch (kind) {
    case SourceOp::Kind::kScratch:
      return "scratch";
    case SourceOp::Kind::kImage:
      return "image";
    case SourceOp::Kind::kContext:
      return "context";
    case SourceOp::Kind::kDirectory:
      return "directory";
  }
  return "";
}

const char* mount_type(Mount::Type type) {
  switch (type) {
    case Mount::Type::kBind:
      return "bind";
    case Mount::Type::kCache:
      return "cache";
    case Mount::Type::kTmpfs:
      return "tmpfs";
    case Mount::Type::kSecret:
      return "secret";
    case Mount::Type::kSsh:
      return "ssh";
  }
  return "";
}

const char* sharing_name(Mount::Sharing sharing) {
  switch (sharing) {
    case Mount::Sharing::kShared:
      return "shared";
    case Mount::Sharing::kPrivate:
      return "private";
    case Mount::Sharing::kLocked:
      return "locked";
  }
  return "";
}

const char* network_name(ExecOp::Network network) {
  switch (network) {
    case ExecOp::Network::kSandbox:
      return "sandbox";
    case ExecOp::Network::kNone:
      return "none";
    case ExecOp::Network::kHost:
      return "host";
  }
  return "";
}

const char* file_action(FileOp::Action action) {
  switch (action) {
    case FileOp::Action::kCopy:
      return "copy";
    case FileOp::Action::kAdd:
      return "add";
    case FileOp::Action::kWorkdir:
      return "workdir";
  }
  return "";
}

const char* config_field(ConfigOp::Field field) {
  switch (field) {
    case ConfigOp::Field::kEnv:
      return "env";
    case ConfigOp::Field::kLabel:
      return "label";
    case ConfigOp::Field::kMaintainer:
      return "maintainer";
    case ConfigOp::Field::kExpose:
      return "expose";
    case ConfigOp::Field::kVolume:
      return "volume";
    case ConfigOp::Field::kUser:
      return "user";
    case ConfigOp::Field::kStopSignal:
      return "stopsignal";
    case ConfigOp::Field::kShell:
      return "shell";
    case ConfigOp::Field::kCmd:
      return "cmd";
    case ConfigOp::Field::kEntrypoint:
      return "entrypoint";
    case ConfigOp::Field::kHealthcheck:
      return "healthcheck";
    case ConfigOp::Field::kOnbuild:
      return "onbuild";
  }
  return "";
}

Json inline_files(const std::vector<InlineFile>& files) {
  Json out = Json::array();
  for (const InlineFile& f : files)
    out.push_back({{"name", f.name}, {"content", f.content}});
  return out;
}

Json pairs_json(const std::vector<std::pair<std::string, std::string>>& pairs) {
  Json out = Json::array();
  for (const auto& [key, value] : pairs)
    out.push_back({key, value});
  return out;
}

Json source_json(const SourceOp& s) {
  Json j;
  j["source"] = source_kind(s.kind);
  if (s.kind == SourceOp::Kind::kScratch || s.kind == SourceOp::Kind::kImage)
    j["platform"] = s.platform.to_string();
  if (s.kind == SourceOp::Kind::kImage) {
    j["image"] = s.image;
    j["manifest"] = s.manifest ? Json(s.manifest->str()) : Json(nullptr);
  }
  if (s.kind == SourceOp::Kind::kDirectory) {
    j["name"] = s.name;
    j["directory"] = s.directory;
  }
  return j;
}

Json mount_json(const Mount& m) {
  Json j;
  j["type"] = mount_type(m.type);
  j["target"] = m.target;
  switch (m.type) {
    case Mount::Type::kBind:
      j["source"] = m.source;
      j["input"] = m.input ? Json(*m.input) : Json(nullptr);
      j["readonly"] = m.readonly;
      break;
    case Mount::Type::kCache:
      j["id"] = m.id;
      j["sharing"] = sharing_name(m.sharing);
      j["readonly"] = m.readonly;
      j["mode"] = m.mode;
      j["uid"] = m.uid;
      j["gid"] = m.gid;
      break;
    case Mount::Type::kTmpfs:
      j["size"] = m.size ? Json(*m.size) : Json(nullptr);
      break;
    case Mount::Type::kSecret:
      j["env"] = m.env;
      [[fallthrough]];
    case Mount::Type::kSsh:
      j["id"] = m.id;
      j["required"] = m.required;
      j["mode"] = m.mode;
      j["uid"] = m.uid;
      j["gid"] = m.gid;
      break;
  }
  return j;
}

Json exec_json(const ExecOp& e) {
  Json j;
  j["command"] = e.command;
  j["shell_form"] = e.shell_form;
  j["heredocs"] = inline_files(e.heredocs);
  j["build_args"] = e.build_args;
  j["args_over_env"] = e.args_over_env;
  j["network"] = network_name(e.network);
  j["security"] = e.insecure ? "insecure" : "sandbox";
  j["extra_hosts"] = pairs_json(e.extra_hosts);
  Json mounts = Json::array();
  for (const Mount& m : e.mounts)
    mounts.push_back(mount_json(m));
  j["mounts"] = std::move(mounts);
  return j;
}

Json file_json(const FileOp& f) {
  Json j;
  j["action"] = file_action(f.action);
  if (f.action == FileOp::Action::kWorkdir) {
    j["path"] = f.dest;
    return j;
  }
  j["sources"] = f.sources;
  j["dest"] = f.dest;
  j["heredocs"] = inline_files(f.heredocs);
  j["chown"] = f.chown ? Json(*f.chown) : Json(nullptr);
  j["chmod"] = f.chmod ? Json(f.chmod->text()) : Json(nullptr);
  j["link"] = f.link;
  j["parents"] = f.parents;
  j["exclude"] = f.exclude;
  j["checksum"] = f.checksum ? Json(*f.checksum) : Json(nullptr);
  return j;
}

Json config_json(const ConfigOp& c) {
  Json j;
  j["field"] = config_field(c.field);
  switch (c.field) {
    case ConfigOp::Field::kEnv:
    case ConfigOp::Field::kLabel:
      j["pairs"] = pairs_json(c.pairs);
      break;
    case ConfigOp::Field::kCmd:
    case ConfigOp::Field::kEntrypoint:
      j["values"] = c.values;
      j["shell_form"] = c.shell_form;
      break;
    case ConfigOp::Field::kHealthcheck:
      j["test"] = c.health.test;
      j["interval"] = c.health.interval;
      j["timeout"] = c.health.timeout;
      j["start_period"] = c.health.start_period;
      j["start_interval"] = c.health.start_interval;
      j["retries"] = c.health.retries;
      break;
    default:
      j["values"] = c.values;
      break;
  }
  return j;
}

}  // namespace

const char* Op::kind_name() const {
  static constexpr const char* kNames[] = {"source", "exec", "file", "config"};
  return kNames[data.index()];
}

std::string stage_label(const GraphStage& stage) {
  return stage.name.empty() ? "stage-" + std::to_string(stage.index) : stage.name;
}

nlohmann::ordered_json op_definition(const Op& op) {
  Json j;
  j["kind"] = op.kind_name();
  std::visit(
      [&](const auto& data) {
        using T = std::decay_t<decltype(data)>;
        Json body;
        if constexpr (std::is_same_v<T, SourceOp>)
          body = source_json(data);
        else if constexpr (std::is_same_v<T, ExecOp>)
          body = exec_json(data);
        else if constexpr (std::is_same_v<T, FileOp>)
          body = file_json(data);
        else
          body = config_json(data);
        for (auto& [key, value] : body.items())
          j[key] = value;
      },
      op.data);
  if (!op.as<SourceOp>())
    j["text"] = op.text;
  return j;
}

nlohmann::ordered_json graph_to_json(const OpGraph& graph) {
  Json out;
  out["format"] = "kiln.plan.v1";
  out["target"] = graph.target;
  out["stages"] = Json::array();
  for (const GraphStage& s : graph.stages) {
    Json st;
    st["index"] = s.index;
    st["name"] = s.name;
    st["line"] = s.where.line;
    st["platform"] = s.platform.to_string();
    st["base"] = s.base;
    st["base_name"] = s.base_name;
    st["ops"] = s.ops;
    st["result"] = s.result;
    st["needs"] = s.needs;
    out["stages"].push_back(std::move(st));
  }
  out["ops"] = Json::array();
  for (const Op& op : graph.ops) {
    Json o;
    o["id"] = op.id;
    o["kind"] = op.kind_name();
    o["stage"] = op.stage ? Json(*op.stage) : Json(nullptr);
    o["line"] = op.where.line;
    o["inputs"] = op.inputs;
    o["definition"] = op_definition(op);
    out["ops"].push_back(std::move(o));
  }
  return out;
}

}  // namespace kiln::frontend
