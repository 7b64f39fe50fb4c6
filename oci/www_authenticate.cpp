#include "kiln/oci/www_authenticate.hpp"

#include "kiln/base/strings.hpp"

namespace kiln::oci {

Challenge parse_challenge(std::string_view header) {
  Challenge challenge;
  header = trim(header);
  size_t space = header.find(' ');
  challenge.scheme = to_lower(header.substr(0, space));
  if (space == std::string_view::npos)
    return challenge;
  std::string_view rest = header.substr(space + 1);
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == ','))
      ++i;
    size_t eq = rest.find('=', i);
    if (eq == std::string_view::npos)
      break;
    std::string key = to_lower(trim(rest.substr(i, eq - i)));
    i = eq + 1;
    std::string value;
    if (i < rest.size() && rest[i] == '"') {
      for (++i; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size())
          ++i;
        value += rest[i];
      }
      ++i;
    } else {
      size_t end = rest.find(',', i);
      value = std::string(trim(rest.substr(i, end == std::string_view::npos ? end : end - i)));
      i = end == std::string_view::npos ? rest.size() : end;
    }
    challenge.params[key] = value;
  }
  return challenge;
}


}  // namespace kiln::oci
