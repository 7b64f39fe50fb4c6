#include <boost/program_options.hpp>
#include <ostream>

#include "app.hpp"
#include "command_line.hpp"
#include "containerfile_input.hpp"
#include "kiln/frontend/ast_json.hpp"
#include "kiln/frontend/build_plan.hpp"

namespace po = boost::program_options;

namespace kiln::cli {

namespace {
const char* const kParseUsage =
    "kiln parse [-f] FILE [--check] [--build-arg K=V]... [--target STAGE]";
}

int parse_command(const std::vector<std::string>& args, Io io) {
  std::string file, target;
  std::vector<std::string> build_args;
  po::options_description visible("Options");
  visible.add_options()("help,h", "print this help")(
      "file,f", po::value(&file), "the Containerfile ('-' reads standard input)")(
      "check", po::bool_switch(),
      "also check the stage graph (stage references, ARG scope, "
      "--target) and print nothing on success")("build-arg", po::value(&build_args),
                                                "with --check: a build argument K=V")(
      "target", po::value(&target), "with --check: the stage to build");
  po::variables_map vm = parse_arguments(args, visible,
                                         {"positional-file", po::value<std::string>(), 1,
                                          "too many arguments: give one Containerfile"},
                                         kParseUsage);
  if (vm.count("help")) {
    print_command_help(io.out, kParseUsage,
                       "Parse a Containerfile and print its syntax tree as JSON (one object per "
                       "instruction with its flags, arguments, here-documents and lines).",
                       visible);
    return kExitOk;
  }
  if (vm.count("positional-file")) {
    if (!file.empty())
      throw UsageError("give the Containerfile once", kParseUsage);
    file = vm["positional-file"].as<std::string>();
  }
  if (file.empty())
    throw UsageError("missing Containerfile", kParseUsage);

  frontend::Containerfile parsed = load_containerfile(file, ".");
  print_warnings(parsed.warnings, io.err);
  if (vm["check"].as<bool>()) {
    frontend::BuildOptions build;
    for (const std::string& arg : build_args) {
      size_t eq = arg.find('=');
      build.build_args.emplace_back(arg.substr(0, eq),
                                    eq == std::string::npos ? "" : arg.substr(eq + 1));
    }
    if (!target.empty())
      build.target = target;
    frontend::BuildPlan plan = frontend::plan_build(parsed, build);
    print_warnings(plan.warnings, io.err);
    return kExitOk;
  }
  io.out << frontend::to_json(parsed).dump(2) << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
