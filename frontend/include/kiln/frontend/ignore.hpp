// .containerignore / .dockerignore: which files of the build context a build may not see.
//
// The rules are those of moby/patternmatcher (ignorefile.ReadAll followed by patternmatcher.New and
// MatchesOrParentMatches), which docker, BuildKit, buildah and podman all use, so a context that
// builds with them builds the same way with kiln:
//
//  * The file is read line by line; "\n" and "\r\n" both end a line. A UTF-8 byte order mark
//    at the start of the file is dropped.
//  * A line whose very first character is '#' is a comment. A '#' anywhere else, even after
//    leading blanks, is part of a pattern (" #x" is the pattern "#x").
//  * Leading and trailing white space (Go's unicode.IsSpace) is removed; blank lines are skipped.
//  * A leading '!' makes the pattern an exclusion: a path it matches is put back into the
//    context. Blanks after the '!' are removed ("! foo" is "!foo"). A '!' with nothing after it,
//    or "!/", is an error.
//  * The pattern is cleaned like Go's filepath.Clean ("./a//b/../c" is "a/c") and one leading
//    '/' is removed ("/a" is "a"; the pattern "/" stays "/" and matches nothing).
//
// A pattern matches a whole slash-separated path relative to the context root, in the syntax of
// Go's filepath.Match plus "**":
//
//    *        any run of characters other than '/' (also none)
//    ?        one character other than '/'
//    [a-z]    one character (a '/' too) in the set; "[^...]" is the complement. "[!...]" is NOT a
//             complement: it is the set holding '!' and the rest, as in Go.
//    \c       the character c itself (moby's regexp gives "\d", "\w" and the like their regexp
//             meaning, an accident we do not copy)
//    ^        outside a class, in a pattern with a wildcard: "at the start of the path" (moby
//             leaves it unescaped in its regexp), so a leading '^' changes nothing and "a*^b"
//             matches nothing; in a pattern without wildcards it is an ordinary character
//    **       at the end of the pattern: anything, '/' included, so "dir/**" matches everything
//             below dir but not dir itself (with another wildcard in the pattern, not across a
//             '\n'). Elsewhere: nothing, or any text that ends with '/', so "a/**/b" matches
//             "a/b" and "a/x/y/b", and "a**b" matches "ab" and "a/x/b" but not "axb". A '/' right
//             after "**" belongs to it.
//    **text   (the pattern starts with "**" and has no other wildcard): every path that ends
//             with text, so "**.txt" matches "a/b.txt" and "**foo" matches "barfoo".
//
// A pattern that matches a directory matches everything below it. The last pattern that matches
// a path decides: the path is excluded if that pattern is not an exclusion, and included if it is
// or if no pattern matches. So "*.md", "!README*.md", "README-secret.md" keeps README.md and drops
// README-secret.md and NOTES.md.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::frontend {

struct IgnorePattern {
  std::string text;        // cleaned pattern as matched (no leading '!', cleaned, no leading '/')
  bool exclusion = false;  // came with a leading '!': re-includes what it matches
  int line = 0;            // 1-based line in the ignore file

  friend bool operator==(const IgnorePattern&, const IgnorePattern&) = default;
};

// The compiled rules of one ignore file. Immutable once built; copies share the compiled state and
// every const member is safe to call from several threads at once.
class IgnoreMatcher {
 public:
  IgnoreMatcher() = default;  // matches nothing

  // Parses ignore-file content; `file` names it in errors and is kept as source(). Throws
  // kiln::InputError ("FILE:LINE:COL: detail", COL being where the pattern starts) for a lone '!'
  // and for a pattern Go's filepath.Match rejects: an unterminated or empty '[' class, an unescaped
  // '-' or ']' at the start of a class range, a range whose ends are reversed, a trailing '\'.
  static IgnoreMatcher parse(std::string_view content, const std::string& file);

  // relpath: slash-separated path relative to the context root, e.g. "dir/file". It is cleaned
  // first ("./a//b/" is "a/b", a leading '/' is dropped); "" and "." (the root) are never excluded.
  // True when the path is excluded from the context.
  bool excluded(std::string_view relpath) const;

  // The pattern that decides relpath (the last one matching it or one of its parent directories),
  // or nullptr when none does. Meant for messages such as "excluded by .dockerignore:3".
  const IgnorePattern* deciding_pattern(std::string_view relpath) const;

  // For a walker that meets an excluded directory `dir` (a relpath as above): false when no
  // exclusion ('!') pattern can match anything strictly below dir, so the walker may skip dir
  // whole; true when one might, so it must descend and ask excluded() for each entry. Never false
  // when some path below dir can be re-included; may be true when none can in practice (for
  // instance a pattern only a non-clean path such as "dir//x" could match).
  bool may_reinclude_below(std::string_view dir) const;

  const std::vector<IgnorePattern>& patterns() const { return patterns_; }
  bool empty() const { return patterns_.empty(); }
  bool has_exclusions() const;
  // The `file` given to parse(); empty for a default-constructed matcher.
  const std::string& source() const { return source_; }

 private:
  struct Compiled;  // one compiled program per pattern, parallel to patterns_

  std::vector<IgnorePattern> patterns_;
  std::shared_ptr<const Compiled> compiled_;
  std::string source_;
};

// Go's filepath.Clean for '/'-separated paths: collapses "//", drops "." elements, resolves ".."
// against the element before it (a leading ".." of a relative path stays, "/.." is "/"), drops a
// trailing '/'. "" becomes ".".
std::string clean_path(std::string_view path);

// Which ignore file applies to a build with this context dir and Containerfile path, first found
// in this order: "<containerfile>.containerignore", "<containerfile>.dockerignore" (beside the
// Containerfile), then "<context>/.containerignore", then "<context>/.dockerignore". nullopt if
// none exists. `containerfile` is used as given (a relative path is relative to the current
// directory, like any path the caller opens); pass an empty path when the Containerfile does not
// come from a file. An entry counts as existing even if it is a dangling symlink or a directory,
// so that loading it reports the problem instead of silently sending files meant to be ignored.
// Throws kiln::Error when a candidate cannot be examined (e.g. permission denied on its directory).
std::optional<std::filesystem::path> find_ignore_file(const std::filesystem::path& context,
                                                      const std::filesystem::path& containerfile);

// Reads and parses the file found by find_ignore_file (empty matcher when none). Throws
// kiln::Error naming the file and the system's reason when it cannot be read, and
// kiln::InputError for a bad pattern.
IgnoreMatcher load_ignore_rules(const std::filesystem::path& context,
                                const std::filesystem::path& containerfile);

}  // namespace kiln::frontend
