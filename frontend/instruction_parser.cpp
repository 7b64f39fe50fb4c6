#include "instruction_parser.hpp"

#include <ContainerfileLexer.h>
#include <ContainerfileParser.h>
#include <antlr4-runtime.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "kiln/base/strings.hpp"
#include "kiln/frontend/duration.hpp"

namespace kiln::frontend::detail {
namespace {

using grammar::ContainerfileLexer;
using grammar::ContainerfileParser;

// Turns the runtime's default "print and recover" behaviour into a positioned kiln error.
class ThrowingErrorListener : public antlr4::BaseErrorListener {
 public:
  explicit ThrowingErrorListener(const LogicalLine& line) : line_(line) {}

  void syntaxError(antlr4::Recognizer*, antlr4::Token* offending, size_t, size_t column,
                   const std::string& message, std::exception_ptr) override {
    size_t offset = offending ? offending->getStartIndex() : column;
    throw InputError(line_.locate(offset), "syntax error: " + message);
  }

 private:
  const LogicalLine& line_;
};

enum class FlagType { kString, kList, kBool };

struct FlagSpec {
  const char* name;
  FlagType type;
};

// The flags each instruction accepts, as BuildKit's dockerfile frontend defines them.
std::vector<FlagSpec> flags_for(InstructionKind kind) {
  switch (kind) {
    case InstructionKind::kFrom:
      return {{"platform", FlagType::kString}};
    case InstructionKind::kRun:
      return {{"mount", FlagType::kList},
              {"network", FlagType::kString},
              {"security", FlagType::kString}};
    case InstructionKind::kCopy:
      return {{"from", FlagType::kString},  {"chown", FlagType::kString},
              {"chmod", FlagType::kString}, {"link", FlagType::kBool},
              {"parents", FlagType::kBool}, {"exclude", FlagType::kList}};
    case InstructionKind::kAdd:
      return {{"chown", FlagType::kString},      {"chmod", FlagType::kString},
              {"link", FlagType::kBool},         {"checksum", FlagType::kString},
              {"keep-git-dir", FlagType::kBool}, {"exclude", FlagType::kList}};
    case InstructionKind::kHealthcheck:
      return {{"interval", FlagType::kString},
              {"timeout", FlagType::kString},
              {"start-period", FlagType::kString},
              {"start-interval", FlagType::kString},
              {"retries", FlagType::kString}};
    default:
      return {};
  }
}

// A flag word loses its quotes and backslash escapes (BuildKit's extractBuilderFlags), then splits
// at the first '='.
Flag decode_flag(std::string_view raw, SourceLocation where) {
  std::string word;
  char quote = 0;
  for (size_t i = 2; i < raw.size(); ++i) {
    char c = raw[i];
    if (quote == 0 && (c == '"' || c == '\'')) {
      quote = c;
      continue;
    }
    if (quote != 0 && c == quote) {
      quote = 0;
      continue;
    }
    if (c == '\\') {
      if (i + 1 == raw.size())
        continue;
      c = raw[++i];
    }
    word += c;
  }
  Flag flag;
  flag.where = std::move(where);
  if (size_t eq = word.find('='); eq != std::string::npos) {
    flag.name = word.substr(0, eq);
    flag.value = word.substr(eq + 1);
  } else {
    flag.name = word;
  }
  return flag;
}

void check_flags(InstructionKind kind, const std::vector<Flag>& flags) {
  std::vector<FlagSpec> specs = flags_for(kind);
  for (size_t i = 0; i < flags.size(); ++i) {
    const Flag& flag = flags[i];
    auto spec = std::find_if(specs.begin(), specs.end(),
                             [&](const FlagSpec& s) { return flag.name == s.name; });
    if (spec == specs.end()) {
      std::string message = "unknown flag --" + flag.name + " for " + keyword_of(kind);
      if (specs.empty()) {
        message += " (it takes no flags)";
      } else {
        std::vector<std::string> names;
        for (const FlagSpec& s : specs)
          names.push_back(std::string("--") + s.name);
        message += " (valid: " + join(names, ", ") + ")";
      }
      throw InputError(flag.where, message);
    }
    switch (spec->type) {
      case FlagType::kBool:
        if (flag.value && !iequals(*flag.value, "true") && !iequals(*flag.value, "false")) {
          throw InputError(flag.where, "expecting boolean value for flag --" + flag.name +
                                           ", not: " + quote(*flag.value));
        }
        break;
      case FlagType::kString:
      case FlagType::kList:
        if (!flag.value)
          throw InputError(flag.where, "missing a value on flag --" + flag.name);
        break;
    }
    if (spec->type != FlagType::kList) {
      for (size_t j = 0; j < i; ++j) {
        if (flags[j].name == flag.name) {
          throw InputError(flag.where, "duplicate flag specified: --" + flag.name);
        }
      }
    }
  }
}

bool is_go_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// The arguments of an instruction and where they start, so that an error in one word can point
// at that word even when it sits on a continuation line.
struct Rest {
  std::string_view text;
  const LogicalLine& line;
  size_t offset;  // code-point offset of text in line.text

  SourceLocation at(size_t byte) const {
    return line.locate(offset + count_code_points(text.substr(0, std::min(byte, text.size()))));
  }
};

struct Word {
  std::string text;
  size_t byte = 0;  // where the word starts in Rest::text
};

std::vector<std::string> texts(const std::vector<Word>& words) {
  std::vector<std::string> out;
  for (const Word& w : words)
    out.push_back(w.text);
  return out;
}

// Splits on runs of whitespace, no quoting (BuildKit's parseStringsWhitespaceDelimited).
std::vector<Word> split_whitespace(std::string_view s) {
  std::vector<Word> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_go_space(s[i]))
      ++i;
    size_t start = i;
    while (i < s.size() && !is_go_space(s[i]))
      ++i;
    if (i > start)
      words.push_back({std::string(s.substr(start, i - start)), start});
  }
  return words;
}

// Splits into words at unquoted whitespace, keeping quotes and escapes in the words (BuildKit's
// parseWords): the values are unquoted later, when they are expanded.
std::vector<Word> split_words_keep_quotes(std::string_view s, char escape) {
  std::vector<Word> words;
  std::string word;
  size_t start = 0;
  bool in_word = false;
  bool blank_ok = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote == 0) {
      if (is_go_space(c)) {
        if (in_word && (blank_ok || !word.empty()))
          words.push_back({word, start});
        word.clear();
        in_word = blank_ok = false;
        continue;
      }
      if (!in_word)
        start = i;
      in_word = true;
      if (c == '\'' || c == '"') {
        quote = c;
        blank_ok = true;
      } else if (c == escape) {
        if (i + 1 == s.size())
          continue;  // an escape at the very end is dropped
        word += c;
        c = s[++i];
      }
      word += c;
      continue;
    }
    if (c == quote) {
      quote = 0;
    } else if (c == escape && quote != '\'') {
      if (i + 1 == s.size())
        continue;
      word += c;
      c = s[++i];
    }
    word += c;
  }
  if (in_word && (blank_ok || !word.empty()))
    words.push_back({word, start});
  return words;
}

enum class JsonResult { kNotJson, kStrings, kNotStrings };

// BuildKit's parseJSON: a JSON array of strings and nothing else.
JsonResult parse_json_strings(std::string_view s, std::vector<std::string>& out) {
  if (!s.starts_with('['))
    return JsonResult::kNotJson;
  nlohmann::json parsed = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array())
    return JsonResult::kNotJson;
  out.clear();
  for (const auto& item : parsed) {
    if (!item.is_string())
      return JsonResult::kNotStrings;
    out.push_back(item.get<std::string>());
  }
  return JsonResult::kStrings;
}

const char* const kNotStringArray =
    "when using JSON array syntax, arrays must be comprised of strings only";

// The arguments as a JSON array of strings (json_form), else as `other_form` reads the text. An
// array with anything but strings in it is an error, not the other form.
template <typename OtherForm>
void decode_json_or(Instruction& ins, std::string_view rest, const OtherForm& other_form) {
  std::vector<std::string> items;
  switch (parse_json_strings(rest, items)) {
    case JsonResult::kStrings:
      ins.args = std::move(items);
      ins.json_form = true;
      return;
    case JsonResult::kNotStrings:
      throw InputError(ins.args_where, kNotStringArray);
    case JsonResult::kNotJson:
      ins.args = other_form(rest);
      return;
  }
}

// Exec form when the arguments are a JSON array of strings, else the whole text as a shell command.
void decode_maybe_json(Instruction& ins, std::string_view rest) {
  decode_json_or(ins, rest, [](std::string_view command) {
    return command.empty() ? std::vector<std::string>{}
                           : std::vector<std::string>{std::string(command)};
  });
}

// A JSON list of strings, else whitespace-separated words (COPY, ADD, VOLUME).
void decode_maybe_json_list(Instruction& ins, std::string_view rest) {
  decode_json_or(ins, rest, [](std::string_view words) { return texts(split_whitespace(words)); });
}

std::string requires_message(const Instruction& ins, const char* what) {
  return std::string(keyword_of(ins.kind)) + " requires " + what;
}

void decode_name_values(Instruction& ins, const Rest& args, char escape) {
  std::string_view rest = args.text;
  std::vector<Word> words = split_words_keep_quotes(rest, escape);
  if (words.empty())
    throw InputError(ins.where, requires_message(ins, "at least one argument"));
  if (words.front().text.find('=') == std::string::npos) {
    // Legacy `ENV name value...`: the value is everything after the first run of whitespace.
    std::string_view key = rest;
    size_t end = 0;
    while (end < rest.size() && !is_go_space(rest[end]))
      ++end;
    key = rest.substr(0, end);
    std::string_view value = rest.substr(end);
    while (!value.empty() && is_go_space(value.front()))
      value.remove_prefix(1);
    if (value.empty()) {
      throw InputError(ins.args_where, std::string(keyword_of(ins.kind)) +
                                           " must have two arguments: " + keyword_of(ins.kind) +
                                           " name=value (or the legacy form: name value)");
    }
    ins.pairs.push_back({std::string(key), std::string(value), ins.args_where, /*legacy=*/true});
    return;
  }
  for (const Word& word : words) {
    size_t eq = word.text.find('=');
    SourceLocation where = args.at(word.byte);
    if (eq == std::string::npos) {
      throw InputError(where, "syntax error: can't find = in " + quote(word.text) +
                                  "; must be of the form: name=value");
    }
    if (eq == 0) {
      throw InputError(where, std::string(keyword_of(ins.kind)) + " names can not be blank");
    }
    ins.pairs.push_back({word.text.substr(0, eq), word.text.substr(eq + 1), where});
  }
}

void decode_args(Instruction& ins, const Rest& args, const std::vector<Word>& words) {
  for (const Word& word : words) {
    size_t eq = word.text.find('=');
    SourceLocation where = args.at(word.byte);
    if (eq == 0)
      throw InputError(where, "ARG names can not be blank");
    if (eq == std::string::npos) {
      ins.pairs.push_back({word.text, std::nullopt, where});
    } else {
      ins.pairs.push_back({word.text.substr(0, eq), word.text.substr(eq + 1), where});
    }
  }
}

bool is_valid_stage_name(std::string_view name) {
  if (name.empty() || !(name[0] >= 'a' && name[0] <= 'z'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

void check_durations(const Instruction& ins) {
  for (const char* name : {"interval", "timeout", "start-period", "start-interval"}) {
    const Flag* flag = ins.find_flag(name);
    if (!flag)
      continue;
    auto nanos = parse_go_duration(*flag->value);
    if (!nanos) {
      throw InputError(flag->where, "invalid duration for --" + std::string(name) + ": " +
                                        quote(*flag->value) + " (use e.g. 30s, 1m30s, 500ms)");
    }
    if (*nanos < 0) {
      throw InputError(flag->where, "--" + std::string(name) + " cannot be negative");
    }
    if (*nanos != 0 && *nanos < 1'000'000) {
      throw InputError(flag->where, "--" + std::string(name) + " cannot be less than 1ms");
    }
  }
  if (const Flag* retries = ins.find_flag("retries")) {
    const std::string& v = *retries->value;
    bool digits = !v.empty() && std::all_of(v.begin() + (v[0] == '-' ? 1 : 0), v.end(),
                                            [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || v == "-") {
      throw InputError(retries->where, "invalid --retries value " + quote(v) + ": not a number");
    }
    if (v[0] == '-')
      throw InputError(retries->where, "--retries cannot be negative");
  }
}

void decode_arguments(Instruction& ins, const LogicalLine& line, size_t rest_offset,
                      std::string_view rest, char escape) {
  const Rest args{rest, line, rest_offset};
  switch (ins.kind) {
    case InstructionKind::kFrom: {
      std::vector<Word> words = split_whitespace(rest);
      ins.args = texts(words);
      if (ins.args.empty() || ins.args.size() == 2 || ins.args.size() > 3) {
        throw InputError(ins.args.empty() ? ins.where : ins.args_where,
                         "FROM requires either one or three arguments: FROM [--platform=P] IMAGE "
                         "[AS NAME]");
      }
      if (ins.args.size() == 3 && !iequals(ins.args[1], "as")) {
        throw InputError(args.at(words[1].byte),
                         "FROM requires either one or three arguments: expected AS, found " +
                             quote(ins.args[1]));
      }
      if (ins.args.size() == 3 && !is_valid_stage_name(to_lower(ins.args[2]))) {
        throw InputError(args.at(words[2].byte),
                         "invalid name for build stage: " + quote(ins.args[2]) +
                             ", name can't start with a number or contain symbols");
      }
      return;
    }
    case InstructionKind::kRun:
    case InstructionKind::kCmd:
    case InstructionKind::kEntrypoint:
      decode_maybe_json(ins, rest);
      if (ins.kind == InstructionKind::kRun && ins.args.empty()) {
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      }
      return;
    case InstructionKind::kShell:
      decode_maybe_json(ins, rest);
      if (ins.args.empty()) {
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      }
      if (!ins.json_form) {
        throw InputError(ins.args_where,
                         "SHELL requires the arguments to be in JSON form, e.g. SHELL "
                         "[\"/bin/sh\", \"-c\"]");
      }
      return;
    case InstructionKind::kLabel:
    case InstructionKind::kEnv:
      decode_name_values(ins, args, escape);
      return;
    case InstructionKind::kArg: {
      std::vector<Word> words = split_words_keep_quotes(rest, escape);
      if (words.empty())
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      decode_args(ins, args, words);
      return;
    }
    case InstructionKind::kExpose:
      ins.args = texts(split_whitespace(rest));
      if (ins.args.empty()) {
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      }
      return;
    case InstructionKind::kVolume:
      decode_maybe_json_list(ins, rest);
      if (ins.args.empty()) {
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      }
      for (const std::string& v : ins.args) {
        if (trim(v).empty()) {
          throw InputError(ins.args_where, "VOLUME specified can not be an empty string");
        }
      }
      return;
    case InstructionKind::kAdd:
    case InstructionKind::kCopy:
      decode_maybe_json_list(ins, rest);
      if (ins.args.size() < 2) {
        throw InputError(ins.args.empty() ? ins.where : ins.args_where,
                         requires_message(ins,
                                          "at least two arguments: a source and a "
                                          "destination"));
      }
      return;
    case InstructionKind::kUser:
    case InstructionKind::kWorkdir:
    case InstructionKind::kStopsignal:
    case InstructionKind::kMaintainer:
      if (rest.empty())
        throw InputError(ins.where, requires_message(ins, "exactly one argument"));
      ins.args = {std::string(rest)};
      return;
    case InstructionKind::kHealthcheck: {
      if (rest.empty())
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      size_t sep = 0;
      while (sep < rest.size() && !is_go_space(rest[sep]))
        ++sep;
      std::string type = to_upper(rest.substr(0, sep));
      std::string_view command = trim_left(rest.substr(sep));
      if (type == "NONE") {
        if (!command.empty()) {
          throw InputError(args.at(rest.size() - command.size()),
                           "HEALTHCHECK NONE takes no arguments");
        }
      } else if (type == "CMD") {
        decode_maybe_json(ins, command);
        if (ins.args.empty()) {
          throw InputError(ins.args_where, "HEALTHCHECK CMD requires a command to run");
        }
      } else {
        throw InputError(ins.args_where, "unknown type " + quote(rest.substr(0, sep)) +
                                             " in HEALTHCHECK (try CMD or NONE)");
      }
      ins.health_type = type;
      check_durations(ins);
      return;
    }
    case InstructionKind::kOnbuild: {
      if (rest.empty())
        throw InputError(ins.where, requires_message(ins, "at least one argument"));
      LogicalLine sub = line.suffix(rest_offset);
      Instruction trigger = parse_instruction(sub, escape);
      if (trigger.kind == InstructionKind::kOnbuild) {
        throw InputError(trigger.where, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      }
      if (trigger.kind == InstructionKind::kFrom || trigger.kind == InstructionKind::kMaintainer) {
        throw InputError(trigger.where, std::string(keyword_of(trigger.kind)) +
                                            " isn't allowed as an ONBUILD trigger");
      }
      ins.trigger.push_back(std::move(trigger));
      return;
    }
  }
}

}  // namespace

bool can_contain_heredoc(const Instruction& instruction) {
  const Instruction& target =
      instruction.kind == InstructionKind::kOnbuild && !instruction.trigger.empty()
          ? instruction.trigger.front()
          : instruction;
  switch (target.kind) {
    case InstructionKind::kRun:
    case InstructionKind::kCopy:
    case InstructionKind::kAdd:
      return !target.json_form;
    default:
      return false;
  }
}

Instruction parse_instruction(const LogicalLine& line, char escape) {
  antlr4::ANTLRInputStream input(line.text);
  ContainerfileLexer lexer(&input);
  ThrowingErrorListener listener(line);
  lexer.removeErrorListeners();
  lexer.addErrorListener(&listener);
  antlr4::CommonTokenStream tokens(&lexer);
  ContainerfileParser parser(&tokens);
  parser.removeErrorListeners();
  parser.addErrorListener(&listener);
  ContainerfileParser::InstructionContext* tree = parser.instruction();

  Instruction ins;
  antlr4::Token* keyword = tree->keyword()->getStart();
  ins.keyword = keyword->getText();
  ins.where = line.locate(keyword->getStartIndex());
  ins.end_line = line.last_line;
  ins.text = line.text;
  auto kind = instruction_kind_from_keyword(ins.keyword);
  if (!kind)
    throw InputError(ins.where, "unknown instruction: " + ins.keyword);
  ins.kind = *kind;

  for (ContainerfileParser::FlagContext* flag : tree->flag()) {
    antlr4::Token* token = flag->getStart();
    SourceLocation where = line.locate(token->getStartIndex());
    if (token->getType() == ContainerfileLexer::UNTERMINATED_FLAG) {
      throw InputError(where, "unterminated quote in flag " + token->getText());
    }
    ins.flags.push_back(decode_flag(token->getText(), std::move(where)));
  }
  check_flags(ins.kind, ins.flags);

  std::string rest;
  size_t rest_offset = line.text.size();
  if (auto* arguments = tree->arguments()) {
    antlr4::Token* token = arguments->getStart();
    rest = token->getText();
    rest_offset = token->getStartIndex();
  }
  ins.args_where = line.locate(rest_offset);
  decode_arguments(ins, line, rest_offset, rest, escape);
  return ins;
}

}  // namespace kiln::frontend::detail
