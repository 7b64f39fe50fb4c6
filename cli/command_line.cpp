#include "command_line.hpp"

#include <ostream>

namespace kiln::cli {
namespace po = boost::program_options;

namespace {

// Boost lets an option with an implicit value take the next word as its value (`--layers ctx`
// would swallow the context), which no buildah, podman or docker flag does: such an option given
// bare (`--layers`, no `=`) is rewritten to `--layers=true`, its only implicit value in kiln.
std::vector<std::string> bare_flags_as_true(const std::vector<std::string>& args,
                                            const po::options_description& flags) {
  std::vector<std::string> out;
  out.reserve(args.size());
  bool operands_only = false;
  for (const std::string& arg : args) {
    if (!operands_only && arg == "--")
      operands_only = true;
    const po::option_description* option = nullptr;
    if (!operands_only && arg.size() > 2 && arg.starts_with("--") &&
        arg.find('=') == std::string::npos) {
      option = flags.find_nothrow(arg.substr(2), false);
    } else if (!operands_only && arg.size() == 2 && arg[0] == '-' && arg[1] != '-') {
      option = flags.find_nothrow(arg, false);  // a short name ("-D") matches as written
    }
    if (option && option->semantic()->min_tokens() == 0 && option->semantic()->max_tokens() == 1 &&
        !option->long_name().empty()) {
      out.push_back("--" + option->long_name() + "=true");
      continue;
    }
    out.push_back(arg);
  }
  return out;
}

}  // namespace

po::variables_map parse_arguments(const std::vector<std::string>& args,
                                  const po::options_description& flags,
                                  const OperandOption& operand, const char* usage) {
  po::options_description hidden;
  hidden.add_options()(operand.name, operand.value);
  po::options_description all;
  all.add(flags).add(hidden);
  po::positional_options_description positional;
  positional.add(operand.name, operand.max);
  po::variables_map vm;
  try {
    // No guessing: `--compress` is not `--compression`, `--plat` is unknown (as in the Go tools).
    int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(bare_flags_as_true(args, flags))
                  .options(all)
                  .positional(positional)
                  .style(style)
                  .run(),
              vm);
    po::notify(vm);
  } catch (const po::too_many_positional_options_error&) {
    throw UsageError(operand.too_many, usage);
  } catch (const po::error& e) {
    throw UsageError(e.what(), usage);
  }
  return vm;
}

void print_command_help(std::ostream& out, const char* usage, const char* summary,
                        const po::options_description& flags) {
  out << "Usage: " << usage << "\n\n" << summary << "\n\n" << flags << "\n";
}

bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   po::options_description& flags, std::vector<std::string>& operands, Io io,
                   po::variables_map* out) {
  flags.add_options()("help,h", "print this help");
  po::variables_map vm = parse_arguments(
      args, flags, {"operand", po::value(&operands), -1, "too many arguments"}, spec.usage);
  if (vm.count("help")) {
    print_command_help(io.out, spec.usage, spec.summary, flags);
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

bool parse_command(const CommandSpec& spec, const std::vector<std::string>& args,
                   std::vector<std::string>& operands, Io io) {
  po::options_description flags("Options");
  return parse_command(spec, args, flags, operands, io);
}

void add_registry_flags(po::options_description& flags) {
  flags.add_options()("tls-verify", po::value<bool>()->implicit_value(true),
                      "verify the registry's TLS certificate and refuse plain HTTP (default "
                      "true; localhost is always allowed plain HTTP)")(
      "creds", po::value<std::string>(), "USER:PASSWORD for the registry")(
      "authfile", po::value<std::string>(), "read credentials from this auth file")(
      "cert-dir", po::value<std::string>(),
      "TLS files for the registry: *.crt CAs, a *.cert and *.key client certificate");
}

oci::RegistryOptions registry_options(const po::variables_map& vm, const CommandSpec& spec) {
  oci::RegistryOptions options;
  if (vm.count("tls-verify"))
    options.tls_verify = vm["tls-verify"].as<bool>();
  if (vm.count("authfile"))
    options.auth_file = std::filesystem::path(vm["authfile"].as<std::string>());
  if (vm.count("cert-dir"))
    options.cert_dir = std::filesystem::path(vm["cert-dir"].as<std::string>());
  if (vm.count("creds")) {
    std::string creds = vm["creds"].as<std::string>();
    size_t colon = creds.find(':');
    if (colon == std::string::npos || colon == 0)
      throw UsageError("--creds must be USER:PASSWORD", spec.usage);
    options.credentials = oci::Credentials{creds.substr(0, colon), creds.substr(colon + 1)};
  }
  return options;
}

}  // namespace kiln::cli
