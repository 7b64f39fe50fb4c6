#include "kiln/oci/store_layout.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>

#include "kiln/base/strings.hpp"

namespace kiln::oci {

namespace {

constexpr std::string_view kTempSnapshotPrefix = ".tmp-";
constexpr std::string_view kTempFileExtension = ".tmp";

// Shared by both forms: a name is unique within the process whichever form it has.
unsigned next_temp_counter() {
  static std::atomic<unsigned> counter{0};
  return counter++;
}

}  // namespace

std::string temp_file_name(std::string_view name) {
  return std::string(name) + "." + std::to_string(::getpid()) + "." +
         std::to_string(next_temp_counter()) + std::string(kTempFileExtension);
}

std::string temp_snapshot_name() {
  return std::string(kTempSnapshotPrefix) + std::to_string(::getpid()) + "-" +
         std::to_string(next_temp_counter());
}

bool is_temp_name(std::string_view name) {
  return is_temp_snapshot_name(name) || ends_with(name, kTempFileExtension);
}

bool is_temp_snapshot_name(std::string_view name) {
  return starts_with(name, kTempSnapshotPrefix);
}

std::optional<pid_t> temp_name_writer(std::string_view name) {
  std::string_view digits;
  if (is_temp_snapshot_name(name)) {
    digits = name.substr(kTempSnapshotPrefix.size());
    digits = digits.substr(0, digits.find('-'));
  } else if (ends_with(name, kTempFileExtension)) {
    std::string_view stem = name.substr(0, name.size() - kTempFileExtension.size());
    size_t counter = stem.rfind('.');
    if (counter == std::string_view::npos)
      return std::nullopt;
    stem = stem.substr(0, counter);
    size_t pid = stem.rfind('.');
    if (pid == std::string_view::npos)
      return std::nullopt;
    digits = stem.substr(pid + 1);
  }
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || pid <= 0)
    return std::nullopt;
  return pid;
}

}  // namespace kiln::oci
