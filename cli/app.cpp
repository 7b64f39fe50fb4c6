#include "app.hpp"

#include <boost/program_options/errors.hpp>
#include <functional>
#include <ostream>

#include "kiln/base/error.hpp"

namespace kiln::cli {
namespace {

struct Command {
  const char* name;
  const char* summary;
  std::function<int(const std::vector<std::string>&, Io)> run;
};

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"build", "Build an image from a Containerfile", build_command},
      {"parse", "Parse a Containerfile and print its syntax tree as JSON", parse_command},
      {"images", "List images in the local store", images_command},
      {"inspect", "Show an image's manifest and config", inspect_command},
      {"history", "Show the steps an image was made of", history_command},
      {"tag", "Add a name to an image", tag_command},
      {"rmi", "Remove images", rmi_command},
      {"save", "Write an image to a docker-archive, oci-archive or OCI layout", save_command},
      {"load", "Load images from a docker-archive or oci-archive", load_command},
      {"pull", "Pull an image from a registry into the store", pull_command},
      {"push", "Push an image to a registry", push_command},
      {"manifest", "Assemble and push manifest lists (multi-platform images)", manifest_command},
      {"login", "Check and store credentials for a registry", login_command},
      {"logout", "Remove stored credentials for a registry", logout_command},
      {"prune", "Remove unused blobs, snapshots and cache entries", prune_command},
      {"check", "Verify the store: blob digests, tags, cache records", check_command},
      {"key", "Generate a signing key pair (kiln key generate)", key_command},
      {"sign", "Sign an image (cosign-compatible)", sign_command},
      {"verify", "Verify an image's signatures with a public key", verify_command},
      {"verify-attestation", "Verify an image's signed attestations (SBOM, provenance)",
       verify_attestation_command},
      {"info", "Show what kiln finds on this machine for this user", info_command},
      {"unshare", "Run a command in the user namespace builds use", unshare_command},
      {"completion", "Print a shell completion script (bash, zsh, fish)", completion_command},
      {"version", "Print kiln's version", version_command},
      // Hidden (not in --help, completions or man pages): the build writes the man pages.
      {"__man", "", man_pages_command},
  };
  return all;
}

void print_help(std::ostream& out) {
  out << "Usage: kiln COMMAND [OPTIONS]\n\n"
         "kiln builds OCI container images from Containerfiles, without a daemon or root.\n\n"
         "Commands:\n";
  for (const auto& [name, summary] : command_summaries())
    out << "  " << name << std::string(name.size() < 11 ? 11 - name.size() : 1, ' ') << summary
        << "\n";
  out << "\nRun 'kiln COMMAND --help' for a command's options.\n";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> command_summaries() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Command& c : commands()) {
    if (!std::string_view(c.name).starts_with("__"))
      out.emplace_back(c.name, c.summary);
  }
  return out;
}

int run(const std::vector<std::string>& args, Io io) {
  if (args.empty()) {
    io.err << "kiln: missing command\n";
    print_help(io.err);
    return kExitUsage;
  }
  const std::string& name = args[0];
  if (name == "--help" || name == "-h" || name == "help") {
    print_help(io.out);
    return kExitOk;
  }
  if (name == "--version")
    return version_command({}, io);
  for (const Command& command : commands()) {
    if (name != command.name)
      continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    try {
      return command.run(rest, io);
    } catch (const UsageError& e) {
      // One line naming the flag and the problem, then where the usage is (as the Go tools).
      io.err << "kiln " << name << ": " << e.what() << "\n";
      io.err << "See 'kiln " << name << " --help'.\n";
      return kExitUsage;
    } catch (const boost::program_options::error& e) {
      io.err << "kiln " << name << ": " << e.what() << "\n";
      io.err << "See 'kiln " << name << " --help'.\n";
      return kExitUsage;
    } catch (const Error& e) {
      io.err << "Error: " << e.what() << "\n";
      return kExitFailure;
    } catch (const std::exception& e) {
      io.err << "Error: internal error: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  io.err << "kiln: unknown command " << name << "\n";
  io.err << "Usage: kiln COMMAND [OPTIONS] (run 'kiln --help' for the list of commands)\n";
  return kExitUsage;
}

}  // namespace kiln::cli
