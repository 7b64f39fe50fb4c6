// Registries the user marks insecure in containers-registries.conf(5), as podman and buildah
// read it: $CONTAINERS_REGISTRIES_CONF when set, else /etc/containers/registries.conf and
// ~/.config/containers/registries.conf (the user's file adds to the system's).
//
// Both forms are read:
//   [[registry]]                      # v2
//   location = "registry.lan:5000"
//   insecure = true
//
//   [registries.insecure]             # v1
//   registries = ["a.lan", "b.lan:5000"]
//
// Only these keys are interpreted; the rest of the file is skipped. A file that cannot be read
// is treated as empty.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::oci {

// The insecure registries of one file's text.
std::vector<std::string> parse_insecure_registries(std::string_view toml);

// The insecure registries of the files the user has.
std::vector<std::string> insecure_registries();

}  // namespace kiln::oci
