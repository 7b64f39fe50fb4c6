// Commands that talk to registries: login, logout, push.
#include <termios.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <ostream>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/auth_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registries_conf.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace kiln::cli {
namespace {

void add_tls_verify(po::options_description& flags) {
  flags.add_options()("tls-verify", po::value<bool>()->implicit_value(true),
                      "verify the registry's TLS certificate and refuse plain HTTP (default "
                      "true; localhost is always allowed plain HTTP)")(
      "cert-dir", po::value<std::string>(),
      "TLS files for the registry: *.crt CAs, a *.cert and *.key client certificate");
}

std::optional<fs::path> auth_file_flag(const po::variables_map& vm) {
  if (!vm.count("authfile"))
    return std::nullopt;
  return fs::path(vm["authfile"].as<std::string>());
}

// "https://registry:5000/v2/" → "registry:5000", as docker login accepts it.
std::string registry_host(std::string text) {
  for (const char* scheme : {"https://", "http://"}) {
    if (starts_with(text, scheme))
      text = text.substr(std::string_view(scheme).size());
  }
  return text.substr(0, text.find('/'));
}

// Reads one line from the terminal, without echo when `secret`.
std::string prompt(const std::string& question, bool secret, Io io) {
  io.err << question << std::flush;
  termios saved{};
  bool restore = secret && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (restore) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (restore) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    io.err << "\n";
  }
  return line;
}

}  // namespace

int login_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "login",
      "kiln login [--username U] [--password P | --password-stdin] [--authfile F] "
      "[--tls-verify=false] [REGISTRY]",
      "Check credentials against a registry (default docker.io) and store them in the auth file\n"
      "($REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json, else\n"
      "~/.config/containers/auth.json) for pull, push and FROM to use.",
      0, 1};
  po::options_description flags("Options");
  flags.add_options()("username,u", po::value<std::string>(), "the user name")(
      "password,p", po::value<std::string>(),
      "the password (visible to other users: prefer "
      "--password-stdin)")("password-stdin", po::bool_switch(),
                           "read the password from standard input")(
      "authfile", po::value<std::string>(), "the auth file to write");
  add_tls_verify(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::string registry = registry_host(operands.empty() ? "docker.io" : operands[0]);
  if (registry.empty())
    throw UsageError("the registry is empty", spec.usage);
  bool from_stdin = vm["password-stdin"].as<bool>();
  if (from_stdin && vm.count("password"))
    throw UsageError("--password and --password-stdin exclude each other", spec.usage);
  bool interactive = ::isatty(STDIN_FILENO) != 0;

  oci::Credentials credentials;
  if (vm.count("username")) {
    credentials.username = vm["username"].as<std::string>();
  } else if (interactive && !from_stdin) {
    credentials.username = prompt("Username: ", false, io);
  } else {
    throw UsageError("missing --username", spec.usage);
  }
  if (vm.count("password")) {
    credentials.password = vm["password"].as<std::string>();
  } else if (from_stdin) {
    credentials.password.assign(std::istreambuf_iterator<char>(std::cin), {});
    while (!credentials.password.empty() &&
           (credentials.password.back() == '\n' || credentials.password.back() == '\r'))
      credentials.password.pop_back();
  } else if (interactive) {
    credentials.password = prompt("Password: ", true, io);
  } else {
    throw UsageError("missing --password or --password-stdin", spec.usage);
  }
  if (credentials.username.empty())
    throw UsageError("the user name is empty", spec.usage);

  oci::RegistryOptions options;
  options.credentials = credentials;
  if (vm.count("tls-verify"))
    options.tls_verify = vm["tls-verify"].as<bool>();
  if (vm.count("cert-dir"))
    options.cert_dir = fs::path(vm["cert-dir"].as<std::string>());
  try {
    oci::RegistryClient(registry, options).ping();
  } catch (const oci::RegistryError& e) {
    throw Error("login to " + registry + " failed: " + e.cause());
  }
  oci::store_credentials(oci::login_file(auth_file_flag(vm)), registry, credentials);
  io.out << "Login Succeeded!\n";
  return kExitOk;
}

int logout_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "logout", "kiln logout [--authfile F] [--all] [REGISTRY]",
      "Remove stored credentials for a registry (default docker.io), or for "
      "every registry with --all.",
      0, 1};
  po::options_description flags("Options");
  flags.add_options()("all,a", po::bool_switch(), "remove the credentials of every registry")(
      "authfile", po::value<std::string>(), "the auth file to change");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  fs::path file = oci::login_file(auth_file_flag(vm));
  if (vm["all"].as<bool>()) {
    if (!operands.empty())
      throw UsageError("--all takes no REGISTRY", spec.usage);
    oci::remove_all_credentials(file);
    io.out << "Removed login credentials for all registries\n";
    return kExitOk;
  }
  std::string registry = registry_host(operands.empty() ? "docker.io" : operands[0]);
  if (!oci::remove_credentials(file, registry))
    throw Error("not logged into " + registry + " (no entry in " + file.string() + ")");
  io.out << "Removed login credentials for " << registry << "\n";
  return kExitOk;
}

int push_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "push",
      "kiln push [--tls-verify=false] [--creds U:P] [--authfile F] [--format oci|docker] "
      "[--digestfile F] IMAGE [DEST]",
      "Push an image (or index) from the local store to a registry, as stored. DEST is a\n"
      "registry reference (docker:// prefix optional) and defaults to IMAGE's name.",
      1, 2};
  po::options_description flags("Options");
  add_registry_flags(flags);
  flags.add_options()(
      "format", po::value<std::string>(),
      "check that the manifest's media types are oci or docker (kiln pushes manifests as "
      "stored; it does not convert them)")("digestfile", po::value<std::string>(),
                                           "write the pushed manifest's digest to this file")(
      "quiet,q", po::bool_switch(), "do not report each blob");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;

  oci::RegistryOptions options = registry_options(vm, spec);
  if (!vm["quiet"].as<bool>())
    options.log = [&](const std::string& line) { io.err << line << "\n"; };

  oci::Store store(oci::Store::default_root());
  std::optional<oci::TaggedImage> image = store.find(operands[0]);
  if (!image) {
    throw Error("image " + quote(operands[0]) + " is not in the store " + store.root().string());
  }
  if (vm.count("format")) {
    std::string format = vm["format"].as<std::string>();
    if (format != "oci" && format != "docker")
      throw UsageError("--format must be oci or docker", spec.usage);
    const std::string& type = image->descriptor.media_type;
    bool is_docker =
        type == oci::media_type::kDockerManifest || type == oci::media_type::kDockerManifestList;
    if ((format == "docker") != is_docker) {
      throw Error("image " + quote(operands[0]) + " is stored as " + type +
                  "; kiln pushes images as stored and cannot convert it to --format " + format);
    }
  }
  std::string dest = operands.size() > 1 ? operands[1] : image->name;
  if (dest.empty()) {
    throw UsageError("image " + quote(operands[0]) + " has no name: give DEST", spec.usage);
  }
  if (starts_with(dest, "docker://"))
    dest = dest.substr(9);
  oci::Reference ref = oci::parse_reference(dest);
  oci::Digest digest;
  try {
    digest = oci::push_image(store, image->descriptor, ref, options);
  } catch (const oci::RegistryError& e) {
    throw Error("push to " + ref.familiar() + " failed: " + e.what() +
                oci::push_failure_advice(e, ref));
  }
  if (vm.count("digestfile")) {
    std::ofstream out(vm["digestfile"].as<std::string>(), std::ios::trunc);
    out << digest.str();
    if (!out.flush())
      throw Error("write " + vm["digestfile"].as<std::string>() + ": cannot write the digest");
  }
  oci::Reference pushed = ref;
  pushed.digest.reset();
  io.out << "Pushed " << pushed.familiar() << "@" << digest.str() << "\n";
  return kExitOk;
}

}  // namespace kiln::cli

namespace kiln::cli {

int pull_command(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "pull",
      "kiln pull [--platform OS/ARCH[/VARIANT] | --all-platforms] [--tls-verify=false] "
      "[--creds U:P] [--authfile F] [-q] REF",
      "Pull an image from a registry into the store (docker:// prefix optional): for an index, "
      "the image for --platform (default: this machine's), or with --all-platforms every image "
      "and the index. REF's tag names it in the store. Prints the image ID (the index digest "
      "with --all-platforms).",
      1, 1};
  po::options_description flags("Options");
  flags.add_options()("platform", po::value<std::string>(), "the platform to pull")(
      "all-platforms", po::bool_switch(), "pull every platform of an index, and the index")(
      "quiet,q", po::bool_switch(), "print only the image ID");
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  bool all = vm["all-platforms"].as<bool>();
  if (all && vm.count("platform"))
    throw UsageError("give --platform or --all-platforms, not both", spec.usage);
  oci::Platform platform = oci::host_platform();
  if (vm.count("platform")) {
    try {
      platform = oci::parse_platform(vm["platform"].as<std::string>());
    } catch (const Error& e) {
      throw UsageError(e.what(), spec.usage);
    }
  }
  std::string text = operands[0];
  if (starts_with(text, "docker://"))
    text = text.substr(9);
  // A short name resolves through registries.conf; several search registries are tried in
  // order (short-name-mode permissive), the first that has it wins.
  std::vector<oci::Reference> candidates =
      oci::resolve_pull_name(oci::load_registries_conf(), text);
  oci::Reference ref = candidates.back();
  oci::RegistryOptions options = registry_options(vm, spec);
  bool quiet = vm["quiet"].as<bool>();
  if (!quiet)
    options.log = [&](const std::string& line) { io.err << line << "\n"; };
  oci::Store store(oci::Store::default_root());

  if (all) {
    oci::RegistryClient client(ref.domain, options);
    oci::RegistryClient::Manifest top =
        client.get_manifest(ref.path, ref.digest ? ref.digest->str() : ref.tag);
    if (oci::media_type::is_index(top.media_type)) {
      oci::Index index = oci::parse_index(top.bytes);
      size_t skipped = 0;
      for (const oci::Descriptor& d : index.manifests) {
        if (!d.platform || d.platform->os == "unknown") {
          ++skipped;  // attestations and entries without a platform are not images to run
          continue;
        }
        oci::Reference child = ref;
        child.tag.clear();
        child.digest = d.digest;
        if (!quiet)
          io.err << "Pulling " << d.platform->to_string() << " (" << d.digest.str() << ")\n";
        oci::pull_image(store, child, *d.platform, options);
      }
      oci::Descriptor stored;
      stored.media_type = top.media_type;
      if (skipped == 0) {
        stored.digest = store.put_blob(top.bytes);  // byte for byte: the same digest
        stored.size = static_cast<int64_t>(top.bytes.size());
      } else {
        std::erase_if(index.manifests, [](const oci::Descriptor& d) {
          return !d.platform || d.platform->os == "unknown";
        });
        stored = store.put_index(index);
        if (!quiet)
          io.err << "Stored the index without its " << skipped
                 << " attestation entries (a new digest)\n";
      }
      if (!ref.tag.empty()) {
        oci::Reference name = ref;
        name.digest.reset();
        store.tag(stored, name.familiar());
      }
      io.out << stored.digest.str() << "\n";
      return kExitOk;
    }
  }
  for (size_t i = 0; i + 1 < candidates.size(); ++i) {
    try {
      oci::ResolvedImage image = oci::pull_image(store, candidates[i], platform, options);
      if (!quiet)
        io.err << "Pulled " << candidates[i].familiar() << " for " << platform.to_string() << "\n";
      io.out << image.parsed.config.digest.str() << "\n";
      return kExitOk;
    } catch (const Error& e) {
      if (!quiet)
        io.err << "Not in " << candidates[i].domain << ": " << e.what() << "\n";
    }
  }
  oci::ResolvedImage image = oci::pull_image(store, ref, platform, options);
  if (!quiet)
    io.err << "Pulled " << ref.familiar() << " for " << platform.to_string() << "\n";
  io.out << image.parsed.config.digest.str() << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
