// Flag and operand parsing shared by the small commands (images, inspect, login, push, ...):
// Boost.Program_options with --help, operands as positional arguments, and usage errors that
// end in exit code 2.
#pragma once

#include <boost/program_options.hpp>
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

// Parses `args` against `flags` (to which --help is added) with the rest as operands. Returns
// false after printing the help for --help. Throws UsageError for an unknown flag, a bad value or
// the wrong number of operands. `vm`, when given, receives the parsed flags.
bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   boost::program_options::options_description& flags,
                   std::vector<std::string>& operands, Io io,
                   boost::program_options::variables_map* vm = nullptr);

// --tls-verify, --creds USER:PASSWORD and --authfile, for commands that talk to a registry.
void add_registry_flags(boost::program_options::options_description& flags);
// The registry options those flags give. Throws UsageError for a malformed --creds.
oci::RegistryOptions registry_options(const boost::program_options::variables_map& vm,
                                      const CommandSpec& spec);

}  // namespace kiln::cli
