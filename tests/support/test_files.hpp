// Small file helpers the integration tests share: writing a file (parents made), reading one
// back, and incompressible bytes for tests that need real data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace kiln::test {

// Writes `content` to `path`, creating its parent directories.
inline void write(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

// The content of `path`, or `missing` when it cannot be opened.
inline std::string read_or(const std::filesystem::path& path, std::string_view missing) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::string(missing);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `size` bytes that do not compress (xorshift64 from `seed`), the same on every run.
inline std::string noise(size_t size, uint64_t seed = 88172645463325252ull) {
  std::string bytes(size, '\0');
  uint64_t x = seed;
  for (char& c : bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  return bytes;
}

}  // namespace kiln::test
