#include "kiln/frontend/ast_json.hpp"

namespace kiln::frontend {

nlohmann::ordered_json to_json(const Instruction& ins) {
  nlohmann::ordered_json out;
  out["name"] = keyword_of(ins.kind);
  out["keyword"] = ins.keyword;
  out["line"] = ins.where.line;
  out["column"] = ins.where.column;
  out["end_line"] = ins.end_line;
  out["flags"] = nlohmann::ordered_json::array();
  for (const Flag& flag : ins.flags) {
    nlohmann::ordered_json f;
    f["name"] = flag.name;
    if (flag.value)
      f["value"] = *flag.value;
    f["line"] = flag.where.line;
    f["column"] = flag.where.column;
    out["flags"].push_back(std::move(f));
  }
  out["args"] = ins.args;
  out["json"] = ins.json_form;
  if (!ins.pairs.empty()) {
    out["pairs"] = nlohmann::ordered_json::array();
    for (const KeyValue& kv : ins.pairs) {
      nlohmann::ordered_json p;
      p["key"] = kv.key;
      if (kv.value)
        p["value"] = *kv.value;
      out["pairs"].push_back(std::move(p));
    }
  }
  if (!ins.heredocs.empty()) {
    out["heredocs"] = nlohmann::ordered_json::array();
    for (const Heredoc& doc : ins.heredocs) {
      out["heredocs"].push_back({{"name", doc.name},
                                 {"content", doc.content},
                                 {"expand", doc.expand},
                                 {"chomp", doc.chomp},
                                 {"fd", doc.fd},
                                 {"line", doc.where.line}});
    }
  }
  if (!ins.health_type.empty())
    out["health_type"] = ins.health_type;
  if (!ins.trigger.empty())
    out["trigger"] = to_json(ins.trigger.front());
  return out;
}

nlohmann::ordered_json to_json(const Containerfile& file) {
  nlohmann::ordered_json out;
  out["file"] = file.filename;
  out["escape"] = std::string(1, file.escape);
  out["directives"] = nlohmann::ordered_json::array();
  for (const Directive& d : file.directives) {
    out["directives"].push_back({{"name", d.name}, {"value", d.value}, {"line", d.where.line}});
  }
  out["instructions"] = nlohmann::ordered_json::array();
  for (const Instruction& ins : file.instructions)
    out["instructions"].push_back(to_json(ins));
  out["warnings"] = nlohmann::ordered_json::array();
  for (const Warning& w : file.warnings) {
    out["warnings"].push_back(
        {{"line", w.where.line}, {"column", w.where.column}, {"message", w.message}});
  }
  return out;
}

}  // namespace kiln::frontend
