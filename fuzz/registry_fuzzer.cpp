// libFuzzer target: no answer a registry (or an auth file, or a cache manifest) can send may
// crash what reads it. The first byte picks the reader; every rejection must be a kiln::Error.
// Readers: manifest, index, image config, WWW-Authenticate challenge, image reference, cache
// manifest + config.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/base/error.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/reference.hpp"
#include "kiln/oci/www_authenticate.hpp"
#include "kiln/solver/cache_transfer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 6) {
      case 0:
        (void)kiln::oci::parse_manifest(text);
        break;
      case 1:
        (void)kiln::oci::parse_index(text);
        break;
      case 2:
        (void)kiln::oci::parse_image_config(text);
        break;
      case 3: {
        kiln::oci::Challenge c = kiln::oci::parse_challenge(text);
        (void)c.params.size();
        break;
      }
      case 4:
        (void)kiln::oci::try_parse_reference(text);
        (void)kiln::oci::parse_reference(text);
        break;
      default: {
        size_t half = text.find('\n');
        std::string manifest(text.substr(0, half));
        std::string config(half == std::string_view::npos ? "" : text.substr(half + 1));
        (void)kiln::solver::parse_cache_manifest(manifest, config, "fuzz");
        break;
      }
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
