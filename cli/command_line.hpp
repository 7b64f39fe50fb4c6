// Flag and operand parsing shared by the commands: Boost.Program_options with --help, operands as
// positional arguments, and usage errors that end in exit code 2. The small commands (images,
// inspect, login, push, ...) use parse_command; build and parse, which check their one operand
// themselves, use parse_arguments and print_command_help.
#pragma once

#include <boost/program_options.hpp>
#include <iosfwd>
#include <string>
#include <vector>

#include "app.hpp"
#include "kiln/oci/registry.hpp"

namespace kiln::cli {

struct CommandSpec {
  const char* name;
  const char* usage;    // "kiln tag IMAGE NEW-NAME..."
  const char* summary;  // one paragraph for --help
  int min_args;
  int max_args;  // -1: unlimited
};

// The hidden option a command's operands are bound to: Boost.Program_options fills it from the
// positional arguments (and, as any option, from --NAME VALUE).
struct OperandOption {
  const char* name;
  // Where the operands go, e.g. po::value(&operands); parse_arguments takes it over.
  boost::program_options::value_semantic* value;
  int max;               // how many at most; -1: any number
  const char* too_many;  // the usage error for more than `max`
};

// Parses `args` against `flags` and `operand`; help and operand counts are left to the caller.
// Throws UsageError, with `usage`, for an unknown flag, a bad value or more than operand.max
// operands.
boost::program_options::variables_map parse_arguments(
    const std::vector<std::string>& args, const boost::program_options::options_description& flags,
    const OperandOption& operand, const char* usage);

// Prints a command's --help: the usage line, the summary paragraph and the flags.
void print_command_help(std::ostream& out, const char* usage, const char* summary,
                        const boost::program_options::options_description& flags);

// Parses `args` against `flags` (to which --help is added) with the rest as operands. Returns
// false after printing the help for --help. Throws UsageError for an unknown flag, a bad value or
// the wrong number of operands. `vm`, when given, receives the parsed flags.
bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   boost::program_options::options_description& flags,
                   std::vector<std::string>& operands, Io io,
                   boost::program_options::variables_map* vm = nullptr);

// parse_command for a command whose only flag is --help.
bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   std::vector<std::string>& operands, Io io);

// --tls-verify, --creds USER:PASSWORD and --authfile, for commands that talk to a registry.
void add_registry_flags(boost::program_options::options_description& flags);
// The registry options those flags give. Throws UsageError for a malformed --creds.
oci::RegistryOptions registry_options(const boost::program_options::variables_map& vm,
                                      const CommandSpec& spec);

}  // namespace kiln::cli
