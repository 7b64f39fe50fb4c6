// In-layer path spelling shared by the layer writer and the differ. Private to the snapshotter.
#pragma once

#include <string>
#include <string_view>

namespace kiln::snapshotter::detail {

// "/etc/hosts", "./etc/hosts/" and "etc/hosts" all name "etc/hosts"; "/", "." and "" name the
// root, returned as "".
std::string relative_path(std::string_view path);

}  // namespace kiln::snapshotter::detail
