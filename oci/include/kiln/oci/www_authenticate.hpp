// The WWW-Authenticate header a registry answers 401 with, as the distribution spec's token
// authentication reads it: `Bearer realm="https://auth.example/token",service="registry",
// scope="repository:app:pull"` or `Basic realm="..."`.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace kiln::oci {

struct Challenge {
  std::string scheme;                         // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lower case, values unquoted and unescaped
};

// Parses the first challenge of a header. Never throws: anything it cannot read is left out
// (a header with no scheme gives an empty one); the caller decides what a usable challenge is.
Challenge parse_challenge(std::string_view header);

}  // namespace kiln::oci
