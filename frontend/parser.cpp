#include "kiln/frontend/parser.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "instruction_parser.hpp"
#include "kiln/frontend/shell_lexer.hpp"
#include "kiln/oci/digest.hpp"
#include "source_reader.hpp"

namespace kiln::frontend {
namespace {

struct HeredocOpening {
  std::string name;
  bool expand = true;
  bool chomp = false;
  unsigned fd = 0;
  std::string word;  // as written, to locate it in the line
};

std::optional<std::string> no_variables(std::string_view) {
  return std::nullopt;
}

std::size_t count_quotes(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\'') +
                                  std::count(s.begin(), s.end(), '"'));
}

// A word opens a here-document when it has the form [digits]<<[-]NAME (BuildKit's rule; "<<<" is a
// here-string and does not). Whether NAME was quoted decides whether the body is expanded.
std::optional<HeredocOpening> heredoc_from_word(const std::string& word) {
  size_t i = 0;
  while (i < word.size() && word[i] >= '0' && word[i] <= '9')
    ++i;
  std::string_view digits(word.data(), i);
  if (word.compare(i, 2, "<<") != 0)
    return std::nullopt;
  i += 2;
  bool chomp = i < word.size() && word[i] == '-';
  if (chomp)
    ++i;
  std::string rest = word.substr(i);
  if (rest.empty() || rest.find('<') != std::string::npos)
    return std::nullopt;

  ShellLexer plain({.escape = '\\', .skip_unset = true});
  ShellLexer raw({.escape = '\\', .raw_quotes = true, .skip_unset = true});
  std::vector<std::string> names = plain.expand_words(rest, no_variables);
  if (names.size() != 1)
    return std::nullopt;
  std::vector<std::string> raw_names = raw.expand_words(rest, no_variables);
  HeredocOpening opening;
  opening.name = names.front();
  opening.expand =
      raw_names.size() == 1 && count_quotes(names.front()) == count_quotes(raw_names.front());
  opening.chomp = chomp;
  opening.fd = digits.empty() ? 0u : static_cast<unsigned>(std::stoul(std::string(digits)));
  opening.word = word;
  return opening;
}

std::vector<HeredocOpening> heredocs_in_line(const std::string& text) {
  std::vector<std::string> words;
  try {
    ShellLexer lexer({.escape = '\\', .raw_quotes = true, .raw_escapes = true, .skip_unset = true});
    words = lexer.expand_words(text, no_variables);
  } catch (const ExpansionError&) {
    return {};  // not shell words: nothing here can open a here-document
  }
  std::vector<HeredocOpening> openings;
  for (const std::string& word : words) {
    try {
      if (auto opening = heredoc_from_word(word))
        openings.push_back(std::move(*opening));
    } catch (const ExpansionError&) {
    }
  }
  return openings;
}

}  // namespace

Containerfile parse_containerfile(std::string_view bytes, const std::string& filename) {
  detail::SourceReader reader(bytes, filename);
  Containerfile file;
  file.filename = filename;
  file.digest = oci::sha256_of(bytes).str();
  file.directives = reader.directives();
  file.escape = reader.escape();

  detail::LogicalLine line;
  while (reader.next(line)) {
    Instruction ins = detail::parse_instruction(line, reader.escape());
    ins.comments = line.comments;
    if (detail::can_contain_heredoc(ins) && line.text.find("<<") != std::string::npos) {
      Instruction& target = ins.kind == InstructionKind::kOnbuild ? ins.trigger.front() : ins;
      size_t search_from = 0;
      for (HeredocOpening& opening : heredocs_in_line(line.text)) {
        size_t at = line.text.find(opening.word, search_from);
        SourceLocation opened_at = ins.where;
        if (at != std::string::npos) {
          opened_at =
              line.locate(detail::count_code_points(std::string_view(line.text).substr(0, at)));
          search_from = at + opening.word.size();
        }
        Heredoc doc;
        doc.name = opening.name;
        doc.expand = opening.expand;
        doc.chomp = opening.chomp;
        doc.fd = opening.fd;
        doc.content = reader.read_heredoc(opening.name, opening.chomp, opened_at, doc.where);
        target.heredocs.push_back(std::move(doc));
      }
      ins.end_line = target.end_line = reader.current_line();
    }
    file.instructions.push_back(std::move(ins));
  }
  file.warnings = std::move(reader.warnings());
  return file;
}

Containerfile read_containerfile(const std::filesystem::path& path,
                                 const std::string& display_name) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error("cannot read Containerfile " + path.string() + ": is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error("cannot read Containerfile " + path.string() + ": " + std::strerror(errno));
  }
  return parse_containerfile(read_bounded(in, path.string()),
                             display_name.empty() ? path.string() : display_name);
}

std::string read_bounded(std::istream& in, const std::string& name) {
  std::string bytes;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    bytes.append(buffer, static_cast<size_t>(in.gcount()));
    if (bytes.size() > kMaxContainerfileBytes) {
      throw Error("cannot read Containerfile " + name + ": larger than " +
                  std::to_string(kMaxContainerfileBytes >> 20) + " MiB");
    }
  }
  if (in.bad())
    throw Error("cannot read Containerfile " + name + ": " + std::strerror(errno));
  return bytes;
}

}  // namespace kiln::frontend
