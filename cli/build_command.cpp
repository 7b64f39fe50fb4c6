#include <filesystem>
#include <ostream>

#include "app.hpp"
#include "build_options.hpp"
#include "containerfile_input.hpp"
#include "kiln/base/error.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/ignore.hpp"

namespace kiln::cli {

int build_command(const std::vector<std::string>& args, Io io) {
  std::optional<BuildCommandOptions> opts = parse_build_options(args, io.out);
  if (!opts)
    return kExitOk;

  std::filesystem::path context = opts->context;
  std::error_code ec;
  if (!std::filesystem::is_directory(context, ec)) {
    throw Error("build context " + context.string() + " is not a directory");
  }
  frontend::Containerfile file = load_containerfile(opts->file, context);
  print_warnings(file.warnings, io.err);
  if (opts->file != "-") {
    // Read now so that a malformed ignore file fails the build before anything runs.
    frontend::load_ignore_rules(context, containerfile_path(opts->file, context));
  }

  frontend::BuildOptions build;
  build.build_args = opts->build_args;
  build.target = opts->target;
  if (!opts->platforms.empty())
    build.target_platform = opts->platforms.front();
  frontend::BuildPlan plan = frontend::plan_build(file, build);
  print_warnings(plan.warnings, io.err);

  if (opts->dry_run) {
    if (*opts->dry_run == "json") {
      io.out << frontend::plan_to_json(plan).dump(2) << "\n";
    } else {
      io.out << frontend::describe_plan(plan);
    }
    return kExitOk;
  }
  throw Error(
      "building images is not implemented in this version of kiln yet; "
      "'kiln build --dry-run' prints the plan");
}

}  // namespace kiln::cli
