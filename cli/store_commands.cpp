// Commands on the local image store. Their command lines are complete; the store itself arrives
// with the store/exporter issue, so for now they say so and fail.
#include <boost/program_options.hpp>
#include <ostream>

#include "app.hpp"
#include "kiln/base/error.hpp"

namespace po = boost::program_options;

namespace kiln::cli {
namespace {

struct Spec {
  const char* name;
  const char* usage;
  const char* summary;
  int min_args;
  int max_args;  // -1: unlimited
};

// Parses `args` against the command's flags; returns false after printing --help.
bool parse(const Spec& spec, const std::vector<std::string>& args, po::options_description& flags,
           std::vector<std::string>& operands, Io io) {
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
  if (spec.max_args >= 0 && count > spec.max_args) {
    throw UsageError("too many arguments", spec.usage);
  }
  return true;
}

[[noreturn]] void not_yet(const Spec& spec) {
  throw Error(std::string("kiln ") + spec.name +
              ": the local image store is not implemented in this version of kiln yet");
}

}  // namespace

int images_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"images", "kiln images [--quiet] [--format table|json]",
                         "List images in the local store.", 0, 0};
  po::options_description flags("Options");
  flags.add_options()("quiet,q", "print image IDs only")(
      "format", po::value<std::string>()->default_value("table"), "table or json");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

int inspect_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"inspect", "kiln inspect IMAGE",
                         "Show an image's manifest (or index) and config as JSON.", 1, 1};
  po::options_description flags("Options");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

int tag_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"tag", "kiln tag IMAGE NEW-NAME...", "Add names to an image.", 2, -1};
  po::options_description flags("Options");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

int rmi_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"rmi", "kiln rmi [--force] IMAGE...", "Remove images from the store.", 1,
                         -1};
  po::options_description flags("Options");
  flags.add_options()("force,f", "remove the image even when other names point at it");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

int push_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"push",
                         "kiln push [--format oci|docker] [--tls-verify=false] IMAGE [DEST]",
                         "Push an image to a registry.", 1, 2};
  po::options_description flags("Options");
  flags.add_options()("format", po::value<std::string>(), "manifest media types: oci or docker")(
      "tls-verify", po::value<bool>(), "verify the registry's TLS certificate (default true)")(
      "sign-key", po::value<std::string>(), "sign the pushed image with this private key");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

int prune_command(const std::vector<std::string>& args, Io io) {
  static const Spec spec{"prune",
                         "kiln prune [--all] [--keep-storage SIZE] [--filter until=DURATION]",
                         "Remove unreferenced blobs, snapshots and cache entries.", 0, 0};
  po::options_description flags("Options");
  flags.add_options()("all,a", "also remove cache entries that images do not reference")(
      "keep-storage", po::value<std::string>(), "keep this much cache, e.g. 10GB")(
      "filter", po::value<std::vector<std::string>>(), "only entries matching, e.g. until=24h");
  std::vector<std::string> operands;
  if (!parse(spec, args, flags, operands, io))
    return kExitOk;
  not_yet(spec);
}

}  // namespace kiln::cli
