// The build's images: FROM bases (for planning: their digest, ENV and ONBUILD triggers) and
// the images ops read, from the local store, a transport (oci:, oci-archive:, docker-archive:)
// or a registry (as the build's pull policy says: SessionRequest::PullPolicy), each resolved once
// per build and held by the session's lease.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/frontend/build_plan.hpp"
#include "kiln/oci/lease.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/session/session.hpp"
#include "kiln/solver/image_source.hpp"
#include "kiln/solver/progress.hpp"

namespace kiln::session {

class ImageResolver final : public solver::ImageSource {
 public:
  ImageResolver(oci::Store& store, oci::RegistryOptions registry, SessionRequest::PullPolicy pull,
                solver::ProgressSink* progress);

  oci::ResolvedImage resolve(const std::string& ref, const oci::Platform& platform) override;
  // What planning needs of a base image.
  frontend::BaseImage base_image(const std::string& ref, const oci::Platform& platform);
  // The platforms `ref` is available for (--all-platforms): an index's entries (attestations
  // left out), or a single image's own platform. Reads the store, or the registry under the pull
  // policy's rules, without pulling layers. Throws kiln::Error naming ref for a transport
  // (oci:, oci-archive:, docker-archive:) and when the image cannot be found.
  std::vector<oci::Platform> platforms(const std::string& ref);

 private:
  bool from_registry(const std::string& ref) const;
  oci::ResolvedImage pull(const std::string& ref, const oci::Platform& platform);
  oci::ResolvedImage pull_one(const std::string& ref, const oci::Reference& parsed,
                              const oci::Platform& platform);
  void say(const std::string& text);

  oci::Store& store_;
  oci::RegistryOptions registry_;
  SessionRequest::PullPolicy pull_;
  solver::ProgressSink* progress_;
  oci::Lease lease_;
  std::mutex mutex_;  // one lookup at a time: the same image is never pulled twice at once
  std::map<std::string, oci::ResolvedImage> images_;  // by "ref|platform"
};

}  // namespace kiln::session
