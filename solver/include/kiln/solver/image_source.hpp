// Where the solver gets images from: FROM bases, COPY --from=IMAGE, RUN --mount from=IMAGE.
//
// The solver never pulls or imports images itself; whoever runs it (the build session) resolves
// references — the local store, transports, registries, --pull policy — and keeps the images'
// blobs for the build.
#pragma once

#include <string>

#include "kiln/oci/image_source.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::solver {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // The image `ref` names for `platform`, with its manifest, config and layers in the store and
  // held there while the build runs. The same (ref, platform) gives the same image for the
  // whole build. Thread-safe. Throws kiln::Error naming the reference and the cause.
  virtual oci::ResolvedImage resolve(const std::string& ref, const oci::Platform& platform) = 0;
};

}  // namespace kiln::solver
