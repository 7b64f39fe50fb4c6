#include "kiln/oci/referrers.hpp"

#include <algorithm>

#include "kiln/oci/media_types.hpp"

namespace kiln::oci {
namespace {

Index empty_index() {
  Index index;
  index.media_type = media_type::kOciIndex;
  return index;
}

}  // namespace

std::string referrers_tag(const Digest& subject) {
  return subject.algorithm() + "-" + subject.hex();
}

Descriptor referrer_descriptor(const Descriptor& manifest, const Manifest& parsed) {
  Descriptor d;
  d.media_type = manifest.media_type.empty() ? media_type::kOciManifest : manifest.media_type;
  d.digest = manifest.digest;
  d.size = manifest.size;
  d.artifact_type = parsed.artifact_type.empty() ? parsed.config.media_type : parsed.artifact_type;
  d.annotations = parsed.annotations;
  return d;
}

Index with_referrer(Index index, const Descriptor& referrer) {
  std::erase_if(index.manifests, [&](const Descriptor& d) { return d.digest == referrer.digest; });
  index.manifests.push_back(referrer);
  if (index.media_type.empty())
    index.media_type = media_type::kOciIndex;
  return index;
}

std::vector<Descriptor> store_referrers(const Store& store, const std::string& repository,
                                        const Digest& subject) {
  std::optional<TaggedImage> tagged = store.find(repository + ":" + referrers_tag(subject));
  if (!tagged || !media_type::is_index(tagged->descriptor.media_type))
    return {};
  return parse_index(store.read_blob(tagged->descriptor.digest)).manifests;
}

void add_store_referrer(Store& store, const std::string& repository, const Digest& subject,
                        const Descriptor& referrer) {
  std::string name = repository + ":" + referrers_tag(subject);
  store.update_tag(name, [&](const std::optional<Descriptor>& current) {
    Index index = current && media_type::is_index(current->media_type)
                      ? parse_index(store.read_blob(current->digest))
                      : empty_index();
    return store.put_index(with_referrer(std::move(index), referrer));
  });
}

std::vector<Descriptor> registry_referrers(RegistryClient& client, const std::string& repo,
                                           const Digest& subject) {
  if (std::optional<Index> listed = client.referrers(repo, subject))
    return listed->manifests;
  if (!client.head_manifest(repo, referrers_tag(subject)))
    return {};
  RegistryClient::Manifest m = client.get_manifest(repo, referrers_tag(subject));
  if (!media_type::is_index(m.media_type))
    return {};
  return parse_index(m.bytes).manifests;
}

bool publish_registry_referrer(RegistryClient& client, const std::string& repo,
                               const Digest& subject, const Descriptor& referrer) {
  if (std::optional<Index> listed = client.referrers(repo, subject)) {
    // The API lists what has a subject; nothing to maintain by hand.
    return true;
  }
  Index index = empty_index();
  if (client.head_manifest(repo, referrers_tag(subject))) {
    RegistryClient::Manifest m = client.get_manifest(repo, referrers_tag(subject));
    if (media_type::is_index(m.media_type))
      index = parse_index(m.bytes);
  }
  index = with_referrer(std::move(index), referrer);
  client.put_manifest(repo, referrers_tag(subject), media_type::kOciIndex, serialize(index));
  return false;
}

}  // namespace kiln::oci
