#include "call_command.hpp"

#include <optional>
#include <ostream>

#include "kiln/base/error.hpp"
#include "kiln/frontend/checks.hpp"
#include "kiln/frontend/outline.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::cli {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

// BuildKit's lint result: {"warnings": [...] | null, "sources": [...]}, each warning with
// ruleName, description, url, detail, location; kiln adds "fix" and the column.
Json check_json(const frontend::CheckReport& report, const std::string& filename) {
  Json warnings = report.findings.empty() ? Json(nullptr) : Json::array();
  for (const frontend::CheckFinding& f : report.findings) {
    Json location = frontend::location_json(f.where.line, f.end_line);
    location["ranges"][0]["start"]["character"] = f.where.column;
    warnings.push_back({{"ruleName", f.rule->name},
                        {"description", f.rule->description},
                        {"url", frontend::check_rule_url(*f.rule)},
                        {"detail", f.message},
                        {"fix", f.rule->fix},
                        {"location", location}});
  }
  Json j{{"warnings", warnings},
         {"sources", Json::array({{{"filename", filename}, {"language", "Dockerfile"}}})}};
  if (!report.notes.empty())
    j["notes"] = report.notes;
  return j;
}

int check(const BuildCommandOptions& opts, const session::SessionRequest& request,
          oci::Store* store, Io io) {
  // Without --target every stage is checked (BuildKit's --check); with one, what it needs.
  bool all = !request.target;
  // A file that cannot be planned still gets the rules that need no plan, then the error (as
  // BuildKit's buildError).
  frontend::BuildPlan plan;
  std::optional<InputError> error;
  try {
    plan = session::plan_without_building(store, request, all);
  } catch (const InputError& e) {
    error = e;
  }
  frontend::CheckOptions options;
  options.config_override = session::check_override(request.build_args);
  if (!all)
    options.stages = std::set<size_t>(plan.order.begin(), plan.order.end());
  options.ignore = &request.solve.ignore;
  if (!request.solve.ignore.source().empty())
    options.ignore_file_name = fs::path(request.solve.ignore.source()).filename().string();
  frontend::CheckReport report = frontend::run_checks(*request.file, plan, options);
  if (opts.call.json) {
    Json j = check_json(report, request.file->filename);
    if (error) {
      j["buildError"] = {
          {"message", error->what()},
          {"location", frontend::location_json(error->where().line, error->where().line)}};
    }
    io.out << j.dump(2) << "\n";
  } else {
    size_t n = report.findings.size();
    if (n == 0) {
      io.out << "Check complete, no warnings found.\n";
    } else {
      io.out << "Check complete, " << n << (n == 1 ? " warning has" : " warnings have")
             << " been found!\n";
      for (const frontend::CheckFinding& f : report.findings)
        io.out << "\n" << frontend::format_finding(f) << "\n";
    }
    for (const std::string& note : report.notes)
      io.err << "note: " << note << "\n";
  }
  if (error && !opts.call.json)
    throw *error;
  bool failed = error || !report.findings.empty();
  return failed && !opts.call.ignore_status ? kExitFailure : kExitOk;
}

}  // namespace

int call_command(const BuildCommandOptions& opts, const session::SessionRequest& request, Io io) {
  const frontend::Containerfile& file = *request.file;
  if (opts.call.function == "targets") {
    std::vector<frontend::TargetInfo> targets = frontend::list_targets(file);
    io.out << (opts.call.json ? frontend::targets_to_json(targets).dump(2) + "\n"
                              : frontend::targets_text(targets));
    return kExitOk;
  }
  // Base images' environments come from the store when it exists; nothing is pulled.
  std::optional<oci::Store> store;
  fs::path root = oci::Store::default_root();
  if (fs::exists(oci::StoreLayout(root).index()))
    store.emplace(root);
  if (opts.call.function == "outline") {
    frontend::BuildPlan plan =
        session::plan_without_building(store ? &*store : nullptr, request, false);
    frontend::Outline outline = frontend::make_outline(file, plan);
    io.out << (opts.call.json ? frontend::outline_to_json(outline).dump(2) + "\n"
                              : frontend::outline_text(outline));
    return kExitOk;
  }
  return check(opts, request, store ? &*store : nullptr, io);
}

}  // namespace kiln::cli
