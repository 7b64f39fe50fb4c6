#include "command_line.hpp"

#include <ostream>

namespace kiln::cli {
namespace po = boost::program_options;

bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   po::options_description& flags, std::vector<std::string>& operands, Io io,
                   po::variables_map* out) {
  flags.add_options()("help,h", "print this help");
  po::options_description hidden;
  hidden.add_options()("operand", po::value(&operands));
  po::options_description all;
  all.add(flags).add(hidden);
  po::positional_options_description positional;
  positional.add("operand", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what(), spec.usage);
  }
  if (vm.count("help")) {
    io.out << "Usage: " << spec.usage << "\n\n" << spec.summary << "\n\n" << flags << "\n";
    return false;
  }
  auto count = static_cast<int>(operands.size());
  if (count < spec.min_args)
    throw UsageError("missing argument", spec.usage);
  if (spec.max_args >= 0 && count > spec.max_args)
    throw UsageError("too many arguments", spec.usage);
  if (out)
    *out = std::move(vm);
  return true;
}

}  // namespace kiln::cli
