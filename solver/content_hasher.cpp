#include "content_hasher.hpp"

#include <fcntl.h>
#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <string_view>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

int64_t ns_of(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

std::string hex128(const XXH128_hash_t& h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, static_cast<uint64_t>(h.high64),
                static_cast<uint64_t>(h.low64));
  return buf;
}

// The text up to the next space, taken off the front of `line` (with the space).
std::string_view next_field(std::string_view& line) {
  size_t space = line.find(' ');
  if (space == std::string_view::npos) {
    std::string_view all = line;
    line = {};
    return all;
  }
  std::string_view field = line.substr(0, space);
  line.remove_prefix(space + 1);
  return field;
}

template <typename Number>
bool number_field(std::string_view& line, Number& out) {
  std::string_view field = next_field(line);
  auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), out);
  return error == std::errc() && end == field.data() + field.size() && !field.empty();
}

}  // namespace

ContentHasher::ContentHasher(const fs::path& cache_dir, const fs::path& context) {
  std::error_code ec;
  fs::path absolute = fs::absolute(context, ec);
  file_ = cache_dir / (oci::sha256_of(absolute.lexically_normal().string()).hex() +
                       std::string(oci::kStatCacheExtension));
  racy_after_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count() -
                   2'000'000'000;
  std::string text;
  try {
    text = read_file(file_);
  } catch (const Error&) {
    return;  // no cache yet
  }
  // Parsed by hand: sscanf over 20,000 lines was a tenth of a fully cached build.
  std::string_view rest = text;
  size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  entries_.reserve(lines);
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    std::string_view hash = next_field(line);
    Entry e;
    if (hash.size() != 32 || !number_field(line, e.size) || !number_field(line, e.mtime_ns) ||
        !number_field(line, e.ctime_ns) || !number_field(line, e.inode) ||
        !number_field(line, e.device) || line.empty()) {
      continue;  // malformed: ignored
    }
    e.hash.assign(hash);
    entries_.insert_or_assign(std::string(line), std::move(e));
  }
}

std::string ContentHasher::file_hash(const fs::path& path, const struct stat& st) {
  std::string key = path.string();
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.size == st.st_size &&
        it->second.mtime_ns == ns_of(st.st_mtim) && it->second.ctime_ns == ns_of(st.st_ctim) &&
        it->second.inode == st.st_ino && it->second.device == st.st_dev) {
      ++hits_;
      return it->second.hash;
    }
  }
  XXH3_state_t* state = XXH3_createState();
  if (!state)
    throw Error("out of memory hashing " + key);
  XXH3_128bits_reset(state);
  try {
    UniqueFd fd = open_or_throw(path, O_RDONLY | O_NOFOLLOW);
    read_chunks(fd.get(), key,
                [&](const char* data, size_t size) { XXH3_128bits_update(state, data, size); });
  } catch (...) {
    XXH3_freeState(state);
    throw;
  }
  std::string hash = hex128(XXH3_128bits_digest(state));
  XXH3_freeState(state);

  std::lock_guard lock(mutex_);
  ++misses_;
  bool racy = ns_of(st.st_mtim) >= racy_after_ns_ || ns_of(st.st_ctim) >= racy_after_ns_;
  if (racy || key.find('\n') != std::string::npos) {
    entries_.erase(key);
  } else {
    entries_[key] = {hash,
                     static_cast<int64_t>(st.st_size),
                     ns_of(st.st_mtim),
                     ns_of(st.st_ctim),
                     static_cast<uint64_t>(st.st_ino),
                     static_cast<uint64_t>(st.st_dev)};
  }
  dirty_ = true;
  return hash;
}

void ContentHasher::save() {
  std::lock_guard lock(mutex_);
  if (!dirty_)
    return;
  std::string out;
  out.reserve(entries_.size() * 120);
  char buf[160];
  for (const auto& [path, e] : entries_) {
    std::snprintf(buf, sizeof buf, "%s %lld %lld %lld %llu %llu ", e.hash.c_str(),
                  static_cast<long long>(e.size), static_cast<long long>(e.mtime_ns),
                  static_cast<long long>(e.ctime_ns), static_cast<unsigned long long>(e.inode),
                  static_cast<unsigned long long>(e.device));
    out += buf;
    out += path;
    out += '\n';
  }
  try {
    fs::create_directories(file_.parent_path());
    oci::write_file_atomically(file_, out);
    dirty_ = false;
  } catch (const std::exception&) {
    // Only an optimisation: the next build re-reads the files.
  }
}

}  // namespace kiln::solver
