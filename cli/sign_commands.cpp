// Cosign-compatible signing: kiln key generate, kiln sign, kiln verify.
#include <boost/program_options.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/exporter/attestation_signing.hpp"
#include "kiln/exporter/signing.hpp"
#include "kiln/oci/registry.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace kiln::cli {
namespace {

constexpr const char* kImageForms =
    "IMAGE is a registry image (NAME[:TAG|@DIGEST] whose first component is a registry host, or\n"
    "docker://NAME), an OCI layout (oci:DIR[:TAG]) or a name or ID in the local store. A tag is\n"
    "resolved to its digest first; the signature is the manifest tagged sha256-<hex>.sig beside\n"
    "the image, in cosign's format.";

// "K=V" flags as a map; a repeated key keeps its last value.
std::map<std::string, std::string> annotations(const std::vector<std::string>& flags,
                                               const CommandSpec& spec) {
  std::map<std::string, std::string> out;
  for (const std::string& flag : flags) {
    size_t equals = flag.find('=');
    if (equals == std::string::npos || equals == 0)
      throw UsageError("--annotation " + quote(flag) + ": expected KEY=VALUE", spec.usage);
    out[flag.substr(0, equals)] = flag.substr(equals + 1);
  }
  return out;
}

// What sign and verify are given besides their own flags.
struct SigningCommandLine {
  std::string image;
  std::string key;  // --key: the private key for sign, the public key for verify
  po::variables_map flags;
};

// Parses the arguments of sign or verify: `flags` (which declare --key), the registry flags,
// one IMAGE and a --key that must be given. Returns nullopt after printing the help for --help.
std::optional<SigningCommandLine> parse_signing_command(const CommandSpec& spec,
                                                        const std::vector<std::string>& args,
                                                        po::options_description& flags, Io io) {
  add_registry_flags(flags);
  std::vector<std::string> operands;
  SigningCommandLine line;
  if (!parse_command(spec, args, flags, operands, io, &line.flags))
    return std::nullopt;
  line.image = operands.front();
  if (!line.flags.count("key"))
    throw UsageError("missing --key", spec.usage);
  line.key = line.flags["key"].as<std::string>();
  return line;
}

int key_generate(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "key generate", "kiln key generate [--output-key-prefix NAME] [--force]",
      "Generate an ECDSA P-256 key pair for kiln sign and cosign: NAME.key, a PKCS#8 private key\n"
      "(mode 0600) encrypted with the password in $KILN_PASSWORD (or $COSIGN_PASSWORD; empty: not\n"
      "encrypted) or asked on the terminal, and NAME.pub, the public key kiln verify and\n"
      "cosign verify take.",
      0, 0};
  po::options_description flags("Options");
  flags.add_options()("output-key-prefix", po::value<std::string>()->default_value("cosign"),
                      "write NAME.key and NAME.pub")(
      "force", po::bool_switch(), "overwrite NAME.key and NAME.pub when they exist");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  std::string prefix = vm["output-key-prefix"].as<std::string>();
  if (prefix.empty())
    throw UsageError("--output-key-prefix is empty", spec.usage);
  bool force = vm["force"].as<bool>();
  if (!force) {
    for (const char* suffix : {".key", ".pub"}) {
      if (fs::exists(prefix + suffix))
        throw Error(prefix + suffix + " already exists (--force overwrites it)");
    }
  }
  std::string password = exporter::key_password("the new private key " + prefix + ".key", true);
  exporter::KeyPairFiles files = exporter::generate_key_pair(prefix, password, force);
  io.out << "Private key written to " << files.private_key.string() << "\n";
  io.out << "Public key written to " << files.public_key.string() << "\n";
  return kExitOk;
}

}  // namespace

int key_command(const std::vector<std::string>& args, Io io) {
  static const char* usage = "kiln key generate [OPTIONS]";
  if (args.empty())
    throw UsageError("missing subcommand", usage);
  if (args[0] == "--help" || args[0] == "-h") {
    io.out << "Usage: " << usage
           << "\n\nManage signing keys.\n\nSubcommands:\n"
              "  generate  Generate an ECDSA P-256 key pair (cosign-compatible)\n";
    return kExitOk;
  }
  if (args[0] == "generate")
    return key_generate(std::vector<std::string>(args.begin() + 1, args.end()), io);
  throw UsageError("unknown subcommand " + quote(args[0]), usage);
}

int sign_command(const std::vector<std::string>& args, Io io) {
  static const std::string summary =
      std::string(
          "Sign an image with a private key, as cosign sign --key does. Signing an index\n"
          "signs the index; --recursive signs each of its manifests too. A second signature\n"
          "joins the first; signing again with the same key and annotations changes "
          "nothing.\n\n") +
      kImageForms;
  static const CommandSpec spec{
      "sign",
      "kiln sign --key KEY [--annotation K=V]... [--recursive | --attestations] [--referrers] "
      "[--tls-verify=false] "
      "[--creds U:P] [--authfile F] IMAGE",
      summary.c_str(), 1, 1};
  po::options_description flags("Options");
  flags.add_options()("key", po::value<std::string>(),
                      "the private key (PEM; its password from $KILN_PASSWORD, $COSIGN_PASSWORD "
                      "or the terminal)")(
      "annotation,a", po::value<std::vector<std::string>>()->composing(),
      "add K=V to the signed payload's optional section (repeatable)")(
      "recursive", po::bool_switch(), "also sign every manifest of an index")(
      "attestations", po::bool_switch(),
      "sign the image's attached attestations (SBOM, provenance) instead, as cosign attest "
      "does: DSSE envelopes in a sha256-<hex>.att manifest beside each platform's image")(
      "referrers", po::bool_switch(),
      "store each signature as an OCI 1.1 referrer of what it signs (the registry's referrers "
      "API, else the sha256-<hex> fallback tag) instead of under the .sig/.att tag");
  std::optional<SigningCommandLine> line = parse_signing_command(spec, args, flags, io);
  if (!line)
    return kExitOk;
  const po::variables_map& vm = line->flags;
  std::map<std::string, std::string> extra =
      annotations(vm.count("annotation") ? vm["annotation"].as<std::vector<std::string>>()
                                         : std::vector<std::string>{},
                  spec);
  oci::RegistryOptions options = registry_options(vm, spec);

  exporter::SigningKey key = exporter::load_signing_key(line->key);
  std::unique_ptr<exporter::SignatureTarget> target =
      exporter::open_signature_target(line->image, options);
  oci::Descriptor top = target->resolve();
  if (vm["attestations"].as<bool>()) {
    std::vector<exporter::AttachedStatement> statements =
        exporter::attached_statements(*target, top);
    if (statements.empty()) {
      throw Error(target->name() +
                  " has no attestations to sign (build it with --sbom or --provenance)");
    }
    bool referrers = vm["referrers"].as<bool>();
    for (const exporter::AttachedStatement& s : statements) {
      bool added =
          referrers ? exporter::sign_attestation_as_referrer(*target, s.subject, s.statement, key)
                    : exporter::sign_attestation(*target, s.subject.digest, s.statement, key);
      std::string type =
          nlohmann::json::parse(s.statement, nullptr, false).value("predicateType", "?");
      io.out << (added ? "Signed attestation " : "Already signed with this key: ") << type
             << " about " << s.subject.digest.str() << " ("
             << (referrers ? std::string("referrer") : exporter::attestation_tag(s.subject.digest))
             << ")\n";
    }
    return kExitOk;
  }
  for (const oci::Descriptor& subject :
       exporter::signing_subjects(*target, top, vm["recursive"].as<bool>())) {
    bool added = vm["referrers"].as<bool>()
                     ? exporter::sign_image_as_referrer(*target, subject, key, extra)
                     : exporter::sign_image(*target, subject.digest, key, extra);
    std::string what = target->name();
    if (subject.digest != top.digest && subject.platform)
      what += " " + subject.platform->to_string();
    io.out << (added ? "Signed " : "Already signed with this key: ") << what << " "
           << subject.digest.str() << " ("
           << (vm["referrers"].as<bool>() ? std::string("referrer")
                                          : exporter::signature_tag(subject.digest))
           << ")\n";
  }
  return kExitOk;
}

int verify_command(const std::vector<std::string>& args, Io io) {
  static const std::string summary =
      std::string(
          "Verify an image's signatures with a public key, as cosign verify --key does: each\n"
          "signature must verify with the key and name the image's digest. Prints each verified\n"
          "signature with its annotations and exits 0 when at least one verifies; exits 1 with\n"
          "the reason for each that does not.\n\n") +
      kImageForms;
  static const CommandSpec spec{
      "verify",
      "kiln verify --key PUBLIC_KEY [--tls-verify=false] [--creds U:P] [--authfile F] IMAGE",
      summary.c_str(), 1, 1};
  po::options_description flags("Options");
  flags.add_options()("key", po::value<std::string>(), "the public key (PEM, as cosign.pub)");
  std::optional<SigningCommandLine> line = parse_signing_command(spec, args, flags, io);
  if (!line)
    return kExitOk;
  const std::string& key_name = line->key;
  oci::RegistryOptions options = registry_options(line->flags, spec);

  exporter::PublicKey key = exporter::load_public_key(key_name);
  std::unique_ptr<exporter::SignatureTarget> target =
      exporter::open_signature_target(line->image, options);
  oci::Digest digest = target->resolve().digest;
  exporter::VerifyResult result = exporter::verify_image(*target, digest, key, key_name);
  std::string what = target->name() + " (" + digest.str() + ")";
  if (!result.found)
    throw Error("no signatures found for " + what);
  for (const exporter::SignatureCheck& check : result.checks) {
    if (check.verified) {
      io.out << "Verified " << what << " with " << key_name << ": signature "
             << check.layer.digest.str() << "\n";
      io.out << "  annotations: " << check.optional << "\n";
    } else {
      io.err << "Signature " << check.layer.digest.str() << ": " << check.failure << "\n";
    }
  }
  if (!result.any_verified()) {
    throw Error("no signature of " + what + " verifies with " + key_name + " (" +
                std::to_string(result.checks.size()) + " checked)");
  }
  return kExitOk;
}

int verify_attestation_command(const std::vector<std::string>& args, Io io) {
  static const std::string summary =
      std::string(
          "Verify an image's signed attestations with a public key, as cosign verify-attestation\n"
          "--key does: every DSSE envelope in the .att manifest of the image (and, for an index,\n"
          "of each platform's image) must verify over its PAE encoding and name that image as\n"
          "its subject. Prints each verified statement (one JSON line each) and exits 0 when at\n"
          "least one of the --type verifies; exits 1 with the reason for each that does not.\n\n") +
      kImageForms;
  static const CommandSpec spec{
      "verify-attestation",
      "kiln verify-attestation --key PUBLIC_KEY [--type slsaprovenance|spdx|cyclonedx|URI] "
      "[--tls-verify=false] IMAGE",
      summary.c_str(), 1, 1};
  po::options_description flags("Options");
  flags.add_options()("key", po::value<std::string>(), "the public key (PEM, as cosign.pub)")(
      "type", po::value<std::string>()->default_value("custom"),
      "the predicate type: slsaprovenance, slsaprovenance1, spdx, spdxjson, cyclonedx, vuln, "
      "custom (cosign's default), or a URI; \"any\" takes every type");
  std::optional<SigningCommandLine> line = parse_signing_command(spec, args, flags, io);
  if (!line)
    return kExitOk;
  const std::string& key_name = line->key;
  oci::RegistryOptions options = registry_options(line->flags, spec);
  std::string type = line->flags["type"].as<std::string>();
  std::vector<std::string> types =
      type == "any" ? std::vector<std::string>{} : exporter::predicate_types(type);

  exporter::PublicKey key = exporter::load_public_key(key_name);
  std::unique_ptr<exporter::SignatureTarget> target =
      exporter::open_signature_target(line->image, options);
  oci::Descriptor top = target->resolve();
  size_t verified = 0, failed = 0;
  bool found = false;
  for (const oci::Descriptor& subject : exporter::signing_subjects(*target, top, true)) {
    if (subject.platform && subject.platform->os == "unknown")
      continue;  // attestation manifests are not attested themselves
    std::optional<std::vector<exporter::AttestationCheck>> checks =
        exporter::verify_attestations(*target, subject.digest, key, key_name, types);
    if (!checks)
      continue;
    found = true;
    for (const exporter::AttestationCheck& check : *checks) {
      if (check.verified) {
        ++verified;
        io.out << check.statement << "\n";
      } else {
        ++failed;
        io.err << "Attestation " << check.layer.digest.str() << " of " << subject.digest.str()
               << ": " << check.failure << "\n";
      }
    }
  }
  std::string what = target->name() + " (" + top.digest.str() + ")";
  if (!found)
    throw Error("no signed attestations found for " + what);
  if (verified == 0) {
    throw Error("no attestation of " + what + (type == "any" ? "" : " of type " + type) +
                " verifies with " + key_name + " (" + std::to_string(failed) + " failed)");
  }
  io.err << "Verified " << verified << " attestation" << (verified == 1 ? "" : "s") << " of "
         << what << " with " << key_name << "\n";
  return failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace kiln::cli
