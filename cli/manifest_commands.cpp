// Manifest lists in the store, as `buildah manifest` and `podman manifest` keep them: an image
// index tagged with the list's name. `kiln build --manifest NAME` adds to one too; a build farm
// builds each architecture on its own machine, pushes it by digest, and one machine assembles and
// pushes the list:
//
//   kiln manifest create app-list
//   kiln manifest add app-list docker://registry.example/app@sha256:…   (pulled into the store)
//   kiln manifest push app-list docker://registry.example/app:1.2
#include <boost/program_options.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "app.hpp"
#include "command_line.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"

namespace po = boost::program_options;

namespace kiln::cli {
namespace {

constexpr const char* kManifestUsage =
    "kiln manifest create|add|annotate|inspect|push|rm|exists LIST [ARGS...]";

oci::Store open_store() {
  return oci::Store(oci::Store::default_root());
}

// A registry reference: "docker://REF", or a name the store does not have.
std::optional<oci::Reference> registry_reference(const oci::Store& store, const std::string& ref) {
  if (starts_with(ref, "docker://"))
    return oci::parse_reference(ref.substr(9));
  if (store.find(ref))
    return std::nullopt;
  return oci::try_parse_reference(ref);
}

// The list NAME names in the store; an error when it is missing or an image.
std::pair<oci::TaggedImage, oci::Index> load_list(const oci::Store& store,
                                                  const std::string& name) {
  std::optional<oci::TaggedImage> found = store.find(oci::Store::canonical_name(name));
  if (!found || found->name != oci::Store::canonical_name(name))
    throw Error("manifest list " + quote(name) + " is not in the store (kiln manifest create)");
  if (!oci::media_type::is_index(found->descriptor.media_type))
    throw Error(quote(name) + " is an image, not a manifest list");
  return {*found, oci::parse_index(store.read_blob(found->descriptor.digest))};
}

// Puts `entries` into `index`, each replacing an entry with its digest.
void replace_entries(oci::Index& index, const std::vector<oci::Descriptor>& entries) {
  for (const oci::Descriptor& e : entries) {
    std::erase_if(index.manifests, [&](const oci::Descriptor& d) { return d.digest == e.digest; });
    index.manifests.push_back(e);
  }
}

// The descriptor a list gets for the manifest `digest` in the store: its platform from its
// config.
oci::Descriptor entry_for(const oci::Store& store, const oci::Descriptor& manifest) {
  oci::Descriptor d;
  d.media_type = manifest.media_type;
  d.digest = manifest.digest;
  d.size = manifest.size;
  oci::Manifest m = oci::parse_manifest(store.read_blob(manifest.digest));
  oci::ImageConfig config = oci::parse_image_config(store.read_blob(m.config.digest));
  d.platform = oci::platform_of(config);
  return d;
}

void add_platform_flags(po::options_description& flags) {
  flags.add_options()("os", po::value<std::string>(), "the entry's OS")(
      "arch", po::value<std::string>(), "the entry's architecture")(
      "variant", po::value<std::string>(), "the entry's architecture variant")(
      "annotation", po::value<std::vector<std::string>>(), "an annotation K=V on the entry");
}

void apply_platform_flags(const po::variables_map& vm, oci::Descriptor& d, const char* usage) {
  if (vm.count("os") || vm.count("arch") || vm.count("variant")) {
    oci::Platform p = d.platform.value_or(oci::Platform{});
    if (vm.count("os"))
      p.os = vm["os"].as<std::string>();
    if (vm.count("arch"))
      p.architecture = vm["arch"].as<std::string>();
    if (vm.count("variant"))
      p.variant = vm["variant"].as<std::string>();
    d.platform = p;
  }
  if (vm.count("annotation")) {
    for (const std::string& a : vm["annotation"].as<std::vector<std::string>>()) {
      size_t eq = a.find('=');
      if (eq == 0 || eq == std::string::npos)
        throw UsageError("--annotation " + quote(a) + ": expected K=V", usage);
      d.annotations[a.substr(0, eq)] = a.substr(eq + 1);
    }
  }
}

// The manifests IMAGE stands for, each in the store (pulled when it names a registry image):
// an image's manifest; for a list, its entry for this machine's platform, or all with `all`.
std::vector<oci::Descriptor> resolve_entries(oci::Store& store, const std::string& image, bool all,
                                             const oci::RegistryOptions& registry, Io io) {
  std::vector<oci::Descriptor> out;
  if (std::optional<oci::Reference> ref = registry_reference(store, image)) {
    oci::RegistryClient client(ref->domain, registry);
    oci::RegistryClient::Manifest top =
        client.get_manifest(ref->path, ref->digest ? ref->digest->str() : ref->tag);
    std::vector<std::pair<oci::Digest, oci::Platform>> wanted;
    if (oci::media_type::is_index(top.media_type)) {
      oci::Index index = oci::parse_index(top.bytes);
      if (all) {
        for (const oci::Descriptor& d : index.manifests) {
          if (d.platform && d.platform->os != "unknown")
            wanted.emplace_back(d.digest, *d.platform);
        }
      } else {
        std::optional<oci::Descriptor> d = oci::find_platform_manifest(index, oci::host_platform());
        if (!d) {
          throw Error(ref->str() + " has no image for " + oci::host_platform().to_string() +
                      " (it has " + oci::platforms_in(index) + "): give --all");
        }
        wanted.emplace_back(d->digest, *d->platform);
      }
    } else {
      wanted.emplace_back(top.digest, oci::host_platform());
    }
    for (const auto& [digest, platform] : wanted) {
      oci::Reference by_digest = *ref;
      by_digest.tag.clear();
      by_digest.digest = digest;
      io.err << "Pulling " << by_digest.str() << "\n";
      oci::ResolvedImage pulled = oci::pull_image(store, by_digest, platform, registry);
      out.push_back(entry_for(store, pulled.manifest));
    }
    return out;
  }
  std::optional<oci::TaggedImage> found = store.find(image);
  if (!found)
    throw Error("image " + quote(image) + " is neither in the store nor a registry reference");
  if (!oci::media_type::is_index(found->descriptor.media_type))
    return {entry_for(store, found->descriptor)};
  oci::Index index = oci::parse_index(store.read_blob(found->descriptor.digest));
  if (all)
    return index.manifests;
  std::optional<oci::Descriptor> d = oci::find_platform_manifest(index, oci::host_platform());
  if (!d)
    throw Error(quote(image) + " has no image for " + oci::host_platform().to_string() +
                ": give --all");
  return {*d};
}

int manifest_create(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "manifest create", "kiln manifest create [--amend] [--all] LIST [IMAGE...]",
      "Create the manifest list LIST in the store, with IMAGEs in it.", 1, -1};
  po::options_description flags("Options");
  flags.add_options()("amend", po::bool_switch(), "add to LIST when it exists already")(
      "all", po::bool_switch(), "for an IMAGE that is a list, add all its images");
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  oci::Store store = open_store();
  oci::RegistryOptions registry = registry_options(vm, spec);
  std::vector<oci::Descriptor> entries;
  for (size_t i = 1; i < operands.size(); ++i) {
    for (oci::Descriptor& d :
         resolve_entries(store, operands[i], vm["all"].as<bool>(), registry, io))
      entries.push_back(std::move(d));
  }
  bool amend = vm["amend"].as<bool>();
  oci::Descriptor list =
      store.update_tag(operands[0], [&](const std::optional<oci::Descriptor>& current) {
        oci::Index index;
        index.media_type = oci::media_type::kOciIndex;
        if (current) {
          if (!amend)
            throw Error("manifest list " + quote(operands[0]) +
                        " exists already (--amend adds "
                        "to it)");
          if (!oci::media_type::is_index(current->media_type))
            throw Error(quote(operands[0]) + " is an image, not a manifest list");
          index = oci::parse_index(store.read_blob(current->digest));
        }
        replace_entries(index, entries);
        return store.put_index(index);
      });
  io.out << list.digest.str() << "\n";
  return kExitOk;
}

int manifest_add(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "manifest add",
      "kiln manifest add [--all] [--os OS] [--arch ARCH] [--variant V] [--annotation K=V] LIST "
      "IMAGE",
      "Add IMAGE (from the store, or docker://REF from a registry, pulled into the store) to the "
      "manifest list LIST. An entry with the same digest is replaced.",
      2, 2};
  po::options_description flags("Options");
  flags.add_options()("all", po::bool_switch(), "for an IMAGE that is a list, add all its images");
  add_platform_flags(flags);
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  oci::Store store = open_store();
  load_list(store, operands[0]);  // exists and is a list, before anything is pulled
  std::vector<oci::Descriptor> entries =
      resolve_entries(store, operands[1], vm["all"].as<bool>(), registry_options(vm, spec), io);
  for (oci::Descriptor& e : entries)
    apply_platform_flags(vm, e, spec.usage);
  oci::Descriptor list =
      store.update_tag(operands[0], [&](const std::optional<oci::Descriptor>& current) {
        if (!current || !oci::media_type::is_index(current->media_type))
          throw Error(quote(operands[0]) + " is no longer a manifest list");
        oci::Index index = oci::parse_index(store.read_blob(current->digest));
        replace_entries(index, entries);
        return store.put_index(index);
      });
  io.out << list.digest.str() << "\n";
  return kExitOk;
}

int manifest_annotate(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "manifest annotate",
      "kiln manifest annotate [--os OS] [--arch ARCH] [--variant V] [--annotation K=V] "
      "[--index] LIST [DIGEST]",
      "Change the platform or annotations of LIST's entry DIGEST (a manifest digest, or an "
      "image in the store), or with --index the annotations of the list itself.",
      1, 2};
  po::options_description flags("Options");
  add_platform_flags(flags);
  flags.add_options()("index", po::bool_switch(), "annotate the list, not an entry");
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  bool on_index = vm["index"].as<bool>();
  if (on_index == (operands.size() == 2))
    throw UsageError("give an entry's DIGEST, or --index", spec.usage);
  oci::Store store = open_store();
  load_list(store, operands[0]);
  std::optional<oci::Digest> target;
  if (!on_index) {
    std::optional<oci::TaggedImage> image = store.find(operands[1]);
    target = image ? image->descriptor.digest : oci::Digest::parse(operands[1]);
  }
  oci::Descriptor list =
      store.update_tag(operands[0], [&](const std::optional<oci::Descriptor>& current) {
        if (!current || !oci::media_type::is_index(current->media_type))
          throw Error(quote(operands[0]) + " is no longer a manifest list");
        oci::Index index = oci::parse_index(store.read_blob(current->digest));
        if (on_index) {
          oci::Descriptor holder;
          apply_platform_flags(vm, holder, spec.usage);
          for (const auto& [k, v] : holder.annotations)
            index.annotations[k] = v;
        } else {
          auto it = std::find_if(index.manifests.begin(), index.manifests.end(),
                                 [&](const oci::Descriptor& d) { return d.digest == *target; });
          if (it == index.manifests.end())
            throw Error("manifest list " + quote(operands[0]) + " has no entry " + target->str());
          apply_platform_flags(vm, *it, spec.usage);
        }
        return store.put_index(index);
      });
  io.out << list.digest.str() << "\n";
  return kExitOk;
}

int manifest_inspect(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"manifest inspect", "kiln manifest inspect LIST",
                                "Print the manifest list LIST (from the store, or docker://REF "
                                "from a registry) as JSON.",
                                1, 1};
  po::options_description flags("Options");
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  oci::Store store = open_store();
  std::string bytes;
  if (std::optional<oci::Reference> ref = registry_reference(store, operands[0])) {
    oci::RegistryClient client(ref->domain, registry_options(vm, spec));
    bytes = client.get_manifest(ref->path, ref->digest ? ref->digest->str() : ref->tag).bytes;
  } else {
    std::optional<oci::TaggedImage> found = store.find(operands[0]);
    if (!found)
      throw Error("manifest list " + quote(operands[0]) + " is not in the store");
    bytes = store.read_blob(found->descriptor.digest);
  }
  io.out << nlohmann::ordered_json::parse(bytes).dump(4) << "\n";
  return kExitOk;
}

int manifest_push(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{
      "manifest push",
      "kiln manifest push [--rm] [--digestfile F] [--tls-verify=false] LIST [DEST]",
      "Push the manifest list LIST and every image in it to DEST (docker://REF or REF; "
      "default: LIST's name).",
      1, 2};
  po::options_description flags("Options");
  flags.add_options()("rm", po::bool_switch(), "remove the list from the store once pushed")(
      "digestfile", po::value<std::string>(), "write the pushed list's digest to this file")(
      "all", po::value<bool>()->implicit_value(true),
      "push every image of the list (always so: accepted for buildah's command lines)")(
      "quiet,q", po::bool_switch(), "do not report each blob");
  add_registry_flags(flags);
  std::vector<std::string> operands;
  po::variables_map vm;
  if (!parse_command(spec, args, flags, operands, io, &vm))
    return kExitOk;
  oci::Store store = open_store();
  auto [list, index] = load_list(store, operands[0]);
  std::string dest = operands.size() > 1 ? operands[1] : list.name;
  if (starts_with(dest, "docker://"))
    dest = dest.substr(9);
  oci::RegistryOptions options = registry_options(vm, spec);
  if (!vm["quiet"].as<bool>())
    options.log = [&](const std::string& line) { io.err << line << "\n"; };
  oci::Reference ref = oci::parse_reference(dest);
  oci::Digest digest = oci::push_image(store, list.descriptor, ref, options);
  if (vm.count("digestfile")) {
    std::ofstream out(vm["digestfile"].as<std::string>(), std::ios::trunc);
    out << digest.str();
    if (!out.flush())
      throw Error("write " + vm["digestfile"].as<std::string>() + ": cannot write the digest");
  }
  if (vm["rm"].as<bool>())
    store.untag(list.name);
  ref.digest.reset();
  io.out << "Pushed " << ref.familiar() << "@" << digest.str() << " (" << index.manifests.size()
         << " images)\n";
  return kExitOk;
}

int manifest_rm(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"manifest rm", "kiln manifest rm LIST...",
                                "Remove manifest lists from the store (not the images in them).", 1,
                                -1};
  std::vector<std::string> operands;
  if (!parse_command(spec, args, operands, io))
    return kExitOk;
  oci::Store store = open_store();
  for (const std::string& name : operands) {
    auto [list, index] = load_list(store, name);
    store.untag(list.name);
    io.out << "Removed " << list.name << "\n";
  }
  return kExitOk;
}

int manifest_exists(const std::vector<std::string>& args, Io io) {
  static const CommandSpec spec{"manifest exists", "kiln manifest exists LIST",
                                "Exit 0 when the manifest list LIST is in the store, 1 if not.", 1,
                                1};
  std::vector<std::string> operands;
  if (!parse_command(spec, args, operands, io))
    return kExitOk;
  oci::Store store = open_store();
  std::optional<oci::TaggedImage> found = store.find(oci::Store::canonical_name(operands[0]));
  return found && found->name == oci::Store::canonical_name(operands[0]) &&
                 oci::media_type::is_index(found->descriptor.media_type)
             ? kExitOk
             : kExitFailure;
}

}  // namespace

int manifest_command(const std::vector<std::string>& args, Io io) {
  static const std::vector<std::pair<const char*, int (*)(const std::vector<std::string>&, Io)>>
      kSubcommands = {{"create", manifest_create},     {"add", manifest_add},
                      {"annotate", manifest_annotate}, {"inspect", manifest_inspect},
                      {"push", manifest_push},         {"rm", manifest_rm},
                      {"exists", manifest_exists}};
  if (args.empty())
    throw UsageError("missing subcommand", kManifestUsage);
  if (args[0] == "--help" || args[0] == "-h") {
    io.out << "Usage: " << kManifestUsage
           << "\n\nManifest lists (image indexes) in the store, to assemble multi-platform "
              "images.\n\nSubcommands:\n"
              "  create    Create a list, optionally with images\n"
              "  add       Add an image (from the store or a registry) to a list\n"
              "  annotate  Change an entry's platform or annotations\n"
              "  inspect   Print a list (from the store or a registry)\n"
              "  push      Push a list and its images\n"
              "  rm        Remove lists\n"
              "  exists    Exit 0 when a list exists\n";
    return kExitOk;
  }
  for (const auto& [name, fn] : kSubcommands) {
    if (args[0] == name)
      return fn(std::vector<std::string>(args.begin() + 1, args.end()), io);
  }
  throw UsageError("unknown subcommand " + quote(args[0]), kManifestUsage);
}

}  // namespace kiln::cli
