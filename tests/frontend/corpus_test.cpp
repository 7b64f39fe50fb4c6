// The Containerfile corpus: every file in corpus/good must parse and plan, and every file in
// corpus/bad must fail with an InputError at the position and with the message its sidecar names.
// The files are real-world shaped, so these tests catch regressions that the focused unit tests
// of the parser and the planner miss.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/parser.hpp"

namespace kiln::frontend {
namespace {

namespace fs = std::filesystem;

constexpr const char* kContainerfileExtension = ".Containerfile";
constexpr const char* kSidecarExtension = ".expected";

fs::path corpus_dir(const char* kind) {
  return fs::path(KILN_TEST_DATA_DIR) / "corpus" / kind;
}

// Paths are strings, not fs::path: GoogleTest would print an fs::path parameter as a range of
// paths, each of which is again a range, and recurse without end.
std::vector<std::string> files_in(const fs::path& dir, const std::string& extension) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == extension) {
      files.push_back(entry.path().string());
    }
  }
  // Directory order is file-system dependent; sorting keeps test names and output stable.
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> good_files() {
  return files_in(corpus_dir("good"), kContainerfileExtension);
}
std::vector<std::string> bad_files() {
  return files_in(corpus_dir("bad"), kContainerfileExtension);
}

// GoogleTest parameter names may hold only [A-Za-z0-9_]; the stems use '-'.
std::string test_name_for(const testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  std::replace_if(
      name.begin(), name.end(),
      [](char c) { return !std::isalnum(static_cast<unsigned char>(c)) && c != '_'; }, '_');
  return name;
}

fs::path sidecar_of(const fs::path& containerfile) {
  fs::path sidecar = containerfile;
  sidecar.replace_extension(kSidecarExtension);
  return sidecar;
}

// What a bad file's sidecar promises: "LINE:COL: message-substring".
struct Expectation {
  int line = 0;
  int column = 0;
  std::string message;
};

std::optional<Expectation> read_expectation(const fs::path& sidecar) {
  std::ifstream in(sidecar);
  std::string text;
  if (!std::getline(in, text))
    return std::nullopt;
  // Tolerate a CRLF checkout of the sidecar; the message substring must not end in '\r'.
  if (!text.empty() && text.back() == '\r')
    text.pop_back();
  const size_t first = text.find(':');
  const size_t second = first == std::string::npos ? first : text.find(':', first + 1);
  if (second == std::string::npos || text.compare(second, 2, ": ") != 0)
    return std::nullopt;
  Expectation expected;
  try {
    expected.line = std::stoi(text.substr(0, first));
    expected.column = std::stoi(text.substr(first + 1, second - first - 1));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  expected.message = text.substr(second + 2);
  if (expected.message.empty())
    return std::nullopt;
  return expected;
}

// Parsing alone is not enough: stage references, ARG scope and expansion errors are only found
// by the planner, and the CLI always does both.
Containerfile parse_and_plan(const fs::path& path) {
  Containerfile file = read_containerfile(path, path.filename().string());
  (void)plan_build(file, {});
  return file;
}

// ---------------------------------------------------------------------------------------------
// The corpus itself

TEST(CorpusFiles, GoodCorpusHasAtLeast40Files) {
  EXPECT_GE(good_files().size(), 40u) << "in " << corpus_dir("good");
}

TEST(CorpusFiles, BadCorpusHasAtLeast20FilesEachWithASidecar) {
  const std::vector<std::string> files = bad_files();
  EXPECT_GE(files.size(), 20u) << "in " << corpus_dir("bad");
  for (const std::string& file : files) {
    EXPECT_TRUE(fs::is_regular_file(sidecar_of(file))) << "no sidecar for " << file;
  }
  // A sidecar whose Containerfile was renamed away would silently test nothing.
  for (const std::string& sidecar : files_in(corpus_dir("bad"), kSidecarExtension)) {
    fs::path containerfile = sidecar;
    containerfile.replace_extension(kContainerfileExtension);
    EXPECT_TRUE(fs::is_regular_file(containerfile)) << "sidecar without a file: " << sidecar;
  }
}

// ---------------------------------------------------------------------------------------------
// Valid files

class GoodCorpus : public testing::TestWithParam<std::string> {};

TEST_P(GoodCorpus, ParsesAndPlans) {
  const fs::path path = GetParam();
  try {
    const Containerfile file = parse_and_plan(path);
    EXPECT_FALSE(file.instructions.empty()) << path;
  } catch (const std::exception& e) {
    FAIL() << "rejected a valid file: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Files, GoodCorpus, testing::ValuesIn(good_files()), test_name_for);

// ---------------------------------------------------------------------------------------------
// Malformed files

class BadCorpus : public testing::TestWithParam<std::string> {};

TEST_P(BadCorpus, FailsWhereTheSidecarSays) {
  const fs::path path = GetParam();
  const std::optional<Expectation> expected = read_expectation(sidecar_of(path));
  ASSERT_TRUE(expected) << "missing or malformed sidecar (want \"LINE:COL: message\"): "
                        << sidecar_of(path);
  try {
    parse_and_plan(path);
  } catch (const InputError& e) {
    // what() is in every message so that a failure shows what kiln actually reported.
    EXPECT_EQ(e.where().file, path.filename().string()) << e.what();
    EXPECT_EQ(e.where().line, expected->line) << e.what();
    EXPECT_EQ(e.where().column, expected->column) << e.what();
    EXPECT_THAT(e.detail(), testing::HasSubstr(expected->message)) << e.what();
    return;
  } catch (const std::exception& e) {
    // A plain kiln::Error has no position: a user could not find the mistake.
    FAIL() << "threw something other than an InputError: " << e.what();
  }
  FAIL() << "accepted a malformed file";
}

INSTANTIATE_TEST_SUITE_P(Files, BadCorpus, testing::ValuesIn(bad_files()), test_name_for);

}  // namespace
}  // namespace kiln::frontend
