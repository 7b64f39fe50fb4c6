#include "kiln/frontend/ignore.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"

namespace kiln::frontend {
namespace {

namespace fs = std::filesystem;

IgnoreMatcher rules(std::string_view content) {
  return IgnoreMatcher::parse(content, ".dockerignore");
}

std::vector<std::string> texts(const IgnoreMatcher& m) {
  std::vector<std::string> out;
  for (const IgnorePattern& p : m.patterns())
    out.push_back((p.exclusion ? "!" : "") + p.text);
  return out;
}

// The what() of the InputError that parsing `content` throws, or "" when it parses.
std::string parse_error(std::string_view content) {
  try {
    rules(content);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Reading the file

TEST(IgnoreParse, CommentsBlankLinesAndTrimming) {
  const IgnoreMatcher m = rules("# comment\n\n   \n  node_modules  \n\t*.log\t\n");
  EXPECT_EQ(texts(m), (std::vector<std::string>{"node_modules", "*.log"}));
  EXPECT_EQ(m.patterns()[0].line, 4);
  EXPECT_EQ(m.patterns()[1].line, 5);
  EXPECT_EQ(m.source(), ".dockerignore");
}

TEST(IgnoreParse, HashIsACommentOnlyInTheFirstColumn) {
  const IgnoreMatcher m = rules("#x\n  #y\nz#\n");
  EXPECT_EQ(texts(m), (std::vector<std::string>{"#y", "z#"}));
  EXPECT_TRUE(m.excluded("#y"));
  EXPECT_FALSE(m.excluded("#x"));
}

TEST(IgnoreParse, CrlfBomAndMissingFinalNewline) {
  const IgnoreMatcher m = rules("\xEF\xBB\xBF# bom then comment\r\nbuild\r\n\r\ndist");
  EXPECT_EQ(texts(m), (std::vector<std::string>{"build", "dist"}));
  EXPECT_EQ(m.patterns()[1].line, 4);
  // A byte order mark further down is not special.
  EXPECT_EQ(texts(rules("a\n\xEF\xBB\xBF"
                        "b")),
            (std::vector<std::string>{"a",
                                      "\xEF\xBB\xBF"
                                      "b"}));
}

TEST(IgnoreParse, UnicodeSpaceIsTrimmedLikeGo) {
  // U+00A0 NO-BREAK SPACE and U+3000 IDEOGRAPHIC SPACE count as space for Go's TrimSpace.
  EXPECT_EQ(texts(rules("\xC2\xA0tmp\xE3\x80\x80")), (std::vector<std::string>{"tmp"}));
}

TEST(IgnoreParse, PatternsAreCleanedAndLoseALeadingSlash) {
  const IgnoreMatcher m = rules("/abs/path\n./rel\na//b/\nx/../y\n./c/./d/..\n../up\n/\n.\n");
  EXPECT_EQ(texts(m),
            (std::vector<std::string>{"abs/path", "rel", "a/b", "y", "c", "../up", "/", "."}));
  EXPECT_TRUE(m.excluded("abs/path"));
  EXPECT_TRUE(m.excluded("rel/file"));
  EXPECT_TRUE(m.excluded("y"));
  EXPECT_FALSE(m.excluded("x"));
  // "/" and "." survive cleaning as themselves and match no path of the context.
  EXPECT_FALSE(rules("/\n.\n").excluded("anything"));
}

TEST(IgnoreParse, ExclusionMarkIsSetAsideWhileCleaning) {
  const IgnoreMatcher m = rules("*\n! /keep/./this\n!!bang\n");
  ASSERT_EQ(m.patterns().size(), 3u);
  EXPECT_EQ(m.patterns()[1], (IgnorePattern{"keep/this", true, 2}));
  EXPECT_EQ(m.patterns()[2], (IgnorePattern{"!bang", true, 3}));  // only the first '!' is special
  EXPECT_TRUE(m.has_exclusions());
  EXPECT_FALSE(rules("a\nb\n").has_exclusions());
}

TEST(IgnoreParse, ErrorsNameFileLineAndColumn) {
  EXPECT_EQ(parse_error("a\n# c\n!\n"), ".dockerignore:3:1: illegal exclusion pattern: \"!\"");
  EXPECT_EQ(parse_error("a\n  !  \n"), ".dockerignore:2:3: illegal exclusion pattern: \"!\"");
  // moby cleans "!/" once more with the mark in place, leaving a bare "!".
  EXPECT_EQ(parse_error("!/\n"), ".dockerignore:1:1: illegal exclusion pattern: \"!\"");
  EXPECT_EQ(parse_error("ok\n\n  src/[abc\n"),
            ".dockerignore:3:3: syntax error in pattern \"src/[abc\": '[' has no matching ']'");
  EXPECT_EQ(parse_error("[]\n"),
            ".dockerignore:1:1: syntax error in pattern \"[]\": empty character class, or ']' not "
            "escaped with '\\'");
  EXPECT_NE(parse_error("[a-]x\n"), "");
  EXPECT_NE(parse_error("[-a]\n"), "");
  EXPECT_NE(parse_error("[z-a]\n"), "");
  EXPECT_NE(parse_error("[a\n"), "");      // nothing after the member
  EXPECT_NE(parse_error("[\\\n"), "");     // escape at the end of a class
  EXPECT_NE(parse_error("!foo\\\n"), "");  // trailing backslash
  EXPECT_EQ(parse_error("[]a]\n").rfind(".dockerignore:1:1: syntax error", 0), 0u);
  // Valid odd ones.
  EXPECT_EQ(parse_error("]\n[]]\n[\\]]\n[\\-]\n[a-]]\n"),
            ".dockerignore:2:1: syntax error in "
            "pattern \"[]]\": empty character class, "
            "or ']' not escaped with '\\'");
  EXPECT_EQ(parse_error("]\n[\\]]\n[\\-]\n[!]\n[^a]\n"), "");
}

TEST(IgnoreParse, InputErrorCarriesTheLocation) {
  try {
    IgnoreMatcher::parse("x\n\n\t!\n", "ctx/Containerfile.dockerignore");
    FAIL() << "no exception";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), (SourceLocation{"ctx/Containerfile.dockerignore", 3, 2}));
    EXPECT_EQ(e.detail(), "illegal exclusion pattern: \"!\"");
  }
}

// ---------------------------------------------------------------------------------------------
// Matching single patterns

TEST(IgnoreMatch, DefaultAndEmptyMatchNothing) {
  EXPECT_FALSE(IgnoreMatcher().excluded("a"));
  EXPECT_FALSE(IgnoreMatcher().may_reinclude_below("a"));
  EXPECT_TRUE(IgnoreMatcher().empty());
  EXPECT_FALSE(rules("# only comments\n").excluded("a"));
}

TEST(IgnoreMatch, StarDoesNotCrossSlash) {
  const IgnoreMatcher m = rules("*.md\n");
  EXPECT_TRUE(m.excluded("README.md"));
  EXPECT_TRUE(m.excluded(".md"));
  EXPECT_FALSE(m.excluded("docs/guide.md"));  // unlike .gitignore, not matched at any depth
  EXPECT_FALSE(m.excluded("README.mdx"));
  EXPECT_TRUE(rules("*/tmp\n").excluded("a/tmp"));
  EXPECT_FALSE(rules("*/tmp\n").excluded("a/b/tmp"));
  EXPECT_TRUE(rules("*\n").excluded("anything/at/all"));  // through the parent "anything"
}

TEST(IgnoreMatch, QuestionMarkIsOneCharacterNotSlash) {
  const IgnoreMatcher m = rules("file?.txt\n");
  EXPECT_TRUE(m.excluded("file1.txt"));
  EXPECT_FALSE(m.excluded("file.txt"));
  EXPECT_FALSE(m.excluded("file12.txt"));
  EXPECT_TRUE(m.excluded("file\xC3\xA9.txt"));  // one character, two bytes
  EXPECT_FALSE(rules("a?b\n").excluded("a/b"));
}

TEST(IgnoreMatch, CharacterClasses) {
  const IgnoreMatcher m = rules("log[0-9].txt\n");
  EXPECT_TRUE(m.excluded("log7.txt"));
  EXPECT_FALSE(m.excluded("logx.txt"));
  EXPECT_TRUE(rules("log[^0-9]\n").excluded("logx"));
  EXPECT_FALSE(rules("log[^0-9]\n").excluded("log7"));
  EXPECT_TRUE(rules("[a-cx]z\n").excluded("xz"));
  EXPECT_TRUE(rules("[\xCE\xB1-\xCF\x89]\n").excluded("\xCE\xBB"));  // Greek alpha..omega, lambda
  // A class may match '/', as in Go.
  EXPECT_TRUE(rules("a[/]b\n").excluded("a/b"));
  // '!' does not negate a class: "[!a]" is the set {'!', 'a'}.
  const IgnoreMatcher bang = rules("[!a]\n");
  EXPECT_TRUE(bang.excluded("!"));
  EXPECT_TRUE(bang.excluded("a"));
  EXPECT_FALSE(bang.excluded("b"));
  // Wildcards inside a class are plain members.
  EXPECT_TRUE(rules("x[*?]\n").excluded("x*"));
  EXPECT_FALSE(rules("x[*?]\n").excluded("xy"));
}

TEST(IgnoreMatch, BackslashEscapes) {
  EXPECT_TRUE(rules("\\*.txt\n").excluded("*.txt"));
  EXPECT_FALSE(rules("\\*.txt\n").excluded("a.txt"));
  EXPECT_TRUE(rules("a\\?\n").excluded("a?"));
  EXPECT_TRUE(rules("\\[x]\n").excluded("[x]"));
  EXPECT_TRUE(rules("\\d\n").excluded("d"));  // a literal 'd', not a digit class
  EXPECT_TRUE(rules("[\\]]\n").excluded("]"));
}

TEST(IgnoreMatch, DoubleStarSlashMatchesAnyDepthIncludingNone) {
  const IgnoreMatcher m = rules("**/*.go\n");
  EXPECT_TRUE(m.excluded("main.go"));
  EXPECT_TRUE(m.excluded("cmd/tool/main.go"));
  EXPECT_FALSE(m.excluded("main.gox"));
  const IgnoreMatcher mid = rules("a/**/b\n");
  EXPECT_TRUE(mid.excluded("a/b"));
  EXPECT_TRUE(mid.excluded("a/x/y/b"));
  EXPECT_FALSE(mid.excluded("a/xb"));
  EXPECT_TRUE(rules("**/node_modules\n").excluded("web/node_modules/x/y.js"));
}

TEST(IgnoreMatch, TrailingDoubleStarMatchesBelowButNotTheDirectory) {
  const IgnoreMatcher m = rules("dir/**\n");
  EXPECT_FALSE(m.excluded("dir"));
  EXPECT_TRUE(m.excluded("dir/x"));
  EXPECT_TRUE(m.excluded("dir/x/y"));
  EXPECT_FALSE(m.excluded("dirx"));
  EXPECT_TRUE(rules("dir**\n").excluded("dirx/y"));
}

TEST(IgnoreMatch, DoubleStarAloneMatchesEverything) {
  const IgnoreMatcher m = rules("**\n");
  EXPECT_TRUE(m.excluded("a"));
  EXPECT_TRUE(m.excluded("a/b/c"));
  EXPECT_TRUE(rules("**/\n").excluded("x"));  // cleaned to "**"
  EXPECT_TRUE(rules("***\n").excluded("x/y"));
}

TEST(IgnoreMatch, DoubleStarQuirksFromMoby) {
  // A pattern that starts with "**" and has no other wildcard matches every path ending so.
  EXPECT_TRUE(rules("**foo\n").excluded("barfoo"));
  EXPECT_TRUE(rules("**.txt\n").excluded("a/b.txt"));
  // Elsewhere "**" not followed by '/' still stands for "(.*/)?".
  const IgnoreMatcher m = rules("a**b\n");
  EXPECT_TRUE(m.excluded("ab"));
  EXPECT_TRUE(m.excluded("a/x/b"));
  EXPECT_FALSE(m.excluded("axb"));
  // The suffix rule only holds without other wildcards: here "**" is "(.*/)?" again.
  EXPECT_FALSE(rules("**fo?\n").excluded("barfoo"));
  EXPECT_TRUE(rules("**fo?\n").excluded("bar/foo"));
}

TEST(IgnoreMatch, CaretIsAnAnchorOnlyInWildcardPatterns) {
  // moby copies '^' into its regexp unescaped.
  EXPECT_TRUE(rules("^*.md\n").excluded("x.md"));  // a leading anchor changes nothing
  EXPECT_FALSE(rules("^x*\n").excluded("^xy"));    // no literal '^' is asked for
  EXPECT_TRUE(rules("^x*\n").excluded("xy"));
  EXPECT_FALSE(rules("a*^b\n").excluded("a^b"));  // an anchor after the start never holds
  EXPECT_TRUE(rules("**^a?\n").excluded("ab"));   // "**" may match nothing before it
  // Without wildcards (moby's literal, prefix and suffix paths) it is a plain character.
  EXPECT_TRUE(rules("^a\n").excluded("^a"));
  EXPECT_TRUE(rules("^a**\n").excluded("^ab/c"));
  EXPECT_FALSE(rules("^a**\n").excluded("ab"));
  EXPECT_TRUE(rules("**^a\n").excluded("x/^a"));
  // Inside a class it negates at the start and is a member elsewhere.
  EXPECT_TRUE(rules("[a^]\n").excluded("^"));
}

TEST(IgnoreMatch, OddCharactersInPaths) {
  // The ".*" moby makes of "**" stops at a newline when the pattern has other wildcards.
  EXPECT_FALSE(rules("a/**/*.c\n").excluded("a/x\ny/z.c"));
  EXPECT_TRUE(rules("a/**\n").excluded("a/x\ny/z.c"));  // prefix path: no regexp involved
  EXPECT_TRUE(rules("a/*\n").excluded("a/x\ny"));       // '*' is "[^/]*", which takes '\n'
  // Bytes that are not UTF-8 count as one character each.
  EXPECT_TRUE(
      rules("a?b\n").excluded("a\xFF"
                              "b"));
  EXPECT_FALSE(
      rules("a?b\n").excluded("a\xFF\xFE"
                              "b"));
}

TEST(IgnoreMatch, ParentDirectoryMatchCoversChildren) {
  const IgnoreMatcher m = rules("build\nsrc/*/gen\n");
  EXPECT_TRUE(m.excluded("build"));
  EXPECT_TRUE(m.excluded("build/x/y.o"));
  EXPECT_FALSE(m.excluded("rebuild/x"));
  EXPECT_FALSE(m.excluded("x/build"));  // patterns are anchored at the context root
  EXPECT_TRUE(m.excluded("src/a/gen/file.c"));
  EXPECT_FALSE(m.excluded("src/gen/file.c"));
}

TEST(IgnoreMatch, PathsAreCleanedBeforeMatching) {
  const IgnoreMatcher m = rules("a/b\n");
  EXPECT_TRUE(m.excluded("./a/b"));
  EXPECT_TRUE(m.excluded("a//b/"));
  EXPECT_TRUE(m.excluded("/a/b/c"));
  EXPECT_TRUE(m.excluded("a/x/../b"));
  EXPECT_FALSE(rules("**\n").excluded("."));  // the root itself is never excluded
  EXPECT_FALSE(rules("**\n").excluded(""));
}

// ---------------------------------------------------------------------------------------------
// Several patterns: the last match decides

TEST(IgnoreOrder, ExceptionsApplyInOrder) {
  const IgnoreMatcher m = rules("*.md\n!README*.md\nREADME-secret.md\n");
  EXPECT_TRUE(m.excluded("NOTES.md"));
  EXPECT_FALSE(m.excluded("README.md"));
  EXPECT_FALSE(m.excluded("README-public.md"));
  EXPECT_TRUE(m.excluded("README-secret.md"));
  EXPECT_FALSE(m.excluded("main.c"));
  ASSERT_NE(m.deciding_pattern("README-secret.md"), nullptr);
  EXPECT_EQ(m.deciding_pattern("README-secret.md")->line, 3);
  EXPECT_EQ(m.deciding_pattern("README.md")->line, 2);
  EXPECT_EQ(m.deciding_pattern("main.c"), nullptr);
  // The same patterns in another order give another answer.
  EXPECT_FALSE(rules("*.md\nREADME-secret.md\n!README*.md\n").excluded("README-secret.md"));
}

TEST(IgnoreOrder, ExceptionInsideAnExcludedDirectory) {
  const IgnoreMatcher m = rules("docs\n!docs/keep.txt\n!docs/public\n");
  EXPECT_TRUE(m.excluded("docs"));
  EXPECT_TRUE(m.excluded("docs/other.txt"));
  EXPECT_FALSE(m.excluded("docs/keep.txt"));
  EXPECT_FALSE(m.excluded("docs/public/deep/file"));
}

TEST(IgnoreOrder, LaterPatternMatchingAParentWins) {
  // MatchesOrParentMatches: the third pattern matches the parent "d" of "d/x" and comes last.
  const IgnoreMatcher m = rules("d\n!d/x\nd\n");
  EXPECT_TRUE(m.excluded("d/x"));
  EXPECT_EQ(m.deciding_pattern("d/x")->line, 3);
}

TEST(IgnoreOrder, ExcludeEverythingThenAllowList) {
  const IgnoreMatcher m = rules("*\n!src\n!Containerfile\nsrc/**/*_test.go\n");
  EXPECT_TRUE(m.excluded(".git/config"));
  EXPECT_FALSE(m.excluded("Containerfile"));
  EXPECT_FALSE(m.excluded("src/main.go"));
  EXPECT_TRUE(m.excluded("src/pkg/x_test.go"));
  EXPECT_TRUE(m.excluded("src/x_test.go"));
}

// ---------------------------------------------------------------------------------------------
// Walking: may_reinclude_below

TEST(IgnoreWalk, LiteralExceptions) {
  const IgnoreMatcher m = rules("docs\nvendor\n!docs/keep.txt\n");
  EXPECT_TRUE(m.may_reinclude_below("docs"));
  EXPECT_FALSE(m.may_reinclude_below("vendor"));
  EXPECT_FALSE(m.may_reinclude_below("doc"));
  EXPECT_FALSE(m.may_reinclude_below("docs/keep.txt"));  // the exception matches it, not below it
  EXPECT_FALSE(rules("docs\n").may_reinclude_below("docs"));  // no exceptions at all
}

TEST(IgnoreWalk, WildcardExceptions) {
  const IgnoreMatcher any_depth = rules("*\n!**/*.go\n");
  EXPECT_TRUE(any_depth.may_reinclude_below("vendor"));
  EXPECT_TRUE(any_depth.may_reinclude_below("a/b/c"));
  const IgnoreMatcher star = rules("*\n!a*/keep\n");
  EXPECT_TRUE(star.may_reinclude_below("abc"));
  EXPECT_FALSE(star.may_reinclude_below("b"));
  EXPECT_FALSE(star.may_reinclude_below("a/b"));  // '*' cannot span the '/'
  const IgnoreMatcher deep = rules("build\n!build/**/*.keep\n");
  EXPECT_TRUE(deep.may_reinclude_below("build"));
  EXPECT_TRUE(deep.may_reinclude_below("build/x/y"));
  EXPECT_FALSE(deep.may_reinclude_below("other"));
  EXPECT_TRUE(rules("*\n!**keep\n").may_reinclude_below("x"));  // suffix form
  EXPECT_TRUE(rules("x\n!x/[ab]\n").may_reinclude_below("./x/"));
}

// The walker contract: whenever some path below an excluded directory is included,
// may_reinclude_below is true for that directory.
TEST(IgnoreWalk, NeverFalseWhenSomethingBelowIsIncluded) {
  const IgnoreMatcher m = rules("*\n!a/*/k?\n!b/**\nc\n!c/d/e\n");
  const std::vector<std::string> paths = {"a/x/k1", "a/x/k12", "b/q/r", "c/d/e/f", "c/d/z"};
  for (const std::string& path : paths) {
    if (m.excluded(path))
      continue;
    for (std::size_t j = path.find('/'); j != std::string::npos; j = path.find('/', j + 1)) {
      const std::string dir = path.substr(0, j);
      if (m.excluded(dir)) {
        EXPECT_TRUE(m.may_reinclude_below(dir)) << dir << " hides " << path;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// clean_path

TEST(CleanPath, MatchesGoFilepathClean) {
  EXPECT_EQ(clean_path(""), ".");
  EXPECT_EQ(clean_path("a/./b/../../c"), "c");
  EXPECT_EQ(clean_path("../../a/.."), "../..");
  EXPECT_EQ(clean_path("/../a//b/"), "/a/b");
  EXPECT_EQ(clean_path("a/.."), ".");
  EXPECT_EQ(clean_path("//"), "/");
  EXPECT_EQ(clean_path("a/...b/.c"), "a/...b/.c");
}

// ---------------------------------------------------------------------------------------------
// Finding and loading the file

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "kiln-ignore-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// find_ignore_file's answer as a string ("<none>" for nullopt), which gtest prints readably.
std::string found(const fs::path& context, const fs::path& containerfile) {
  const std::optional<fs::path> file = find_ignore_file(context, containerfile);
  return file ? file->string() : "<none>";
}

void write(const fs::path& path, std::string_view content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

TEST(IgnoreFile, PrecedenceOfTheFourNames) {
  TempDir tmp;
  const fs::path context = tmp.path() / "ctx";
  const fs::path containerfile = tmp.path() / "files" / "app.Containerfile";
  write(containerfile, "FROM scratch\n");
  fs::create_directories(context);
  EXPECT_EQ(found(context, containerfile), "<none>");

  write(context / ".dockerignore", "d\n");
  EXPECT_EQ(found(context, containerfile), (context / ".dockerignore").string());
  write(context / ".containerignore", "c\n");
  EXPECT_EQ(found(context, containerfile), (context / ".containerignore").string());
  const fs::path beside_docker = tmp.path() / "files" / "app.Containerfile.dockerignore";
  write(beside_docker, "bd\n");
  EXPECT_EQ(found(context, containerfile), (beside_docker).string());
  const fs::path beside_container = tmp.path() / "files" / "app.Containerfile.containerignore";
  write(beside_container, "bc\n");
  EXPECT_EQ(found(context, containerfile), (beside_container).string());

  // Without a Containerfile path only the context is searched.
  EXPECT_EQ(found(context, fs::path()), (context / ".containerignore").string());
  EXPECT_EQ(texts(load_ignore_rules(context, containerfile)), (std::vector<std::string>{"bc"}));
  EXPECT_EQ(load_ignore_rules(context, containerfile).source(), beside_container.string());
}

TEST(IgnoreFile, LoadWithoutAnyFileIsEmpty) {
  TempDir tmp;
  const IgnoreMatcher m = load_ignore_rules(tmp.path(), tmp.path() / "Containerfile");
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.excluded("x"));
}

TEST(IgnoreFile, ErrorsNameThePath) {
  TempDir tmp;
  fs::create_directories(tmp.path() / ".dockerignore");  // exists, but cannot be read as a file
  try {
    load_ignore_rules(tmp.path(), fs::path());
    FAIL() << "no exception";
  } catch (const InputError&) {
    FAIL() << "an I/O failure is not an input error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find((tmp.path() / ".dockerignore").string()), std::string::npos) << what;
    EXPECT_NE(what.find("Is a directory"), std::string::npos) << what;
  }

  write(tmp.path() / ".containerignore", "ok\n!\n");
  try {
    load_ignore_rules(tmp.path(), fs::path());
    FAIL() << "no exception";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), (tmp.path() / ".containerignore").string() +
                                         ":2:1: illegal exclusion pattern: \"!\"");
  }
}

}  // namespace
}  // namespace kiln::frontend
