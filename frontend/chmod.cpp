#include <charconv>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/op_graph.hpp"

namespace kiln::frontend {

ChmodSpec ChmodSpec::parse(std::string_view text) {
  ChmodSpec spec;
  spec.text_ = std::string(text);
  if (!text.empty() && text.find_first_not_of("01234567") == std::string_view::npos) {
    if (text.size() > 4)
      throw Error("invalid --chmod " + quote(text) + ": too many octal digits");
    unsigned value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value, 8);
    spec.octal_ = true;
    spec.bits_ = static_cast<mode_t>(value);
    return spec;
  }
  auto fail = [&](const char* why) -> ChmodSpec {
    throw Error("invalid --chmod " + quote(text) + ": " + why +
                " (use octal like 0755 or symbolic like u+x,go-w)");
  };
  if (text.empty())
    return fail("empty");
  for (const std::string& part : split(text, ',')) {
    size_t i = 0;
    unsigned who = 0;
    for (; i < part.size() && std::string_view("ugoa").find(part[i]) != std::string_view::npos;
         ++i) {
      switch (part[i]) {
        case 'u':
          who |= 04700;
          break;
        case 'g':
          who |= 02070;
          break;
        case 'o':
          who |= 01007;
          break;
        default:
          who |= 07777;
          break;
      }
    }
    if (who == 0)
      who = 07777;
    if (i >= part.size())
      return fail("missing +, - or =");
    do {
      char op = part[i++];
      if (op != '+' && op != '-' && op != '=')
        return fail("expected +, - or =");
      size_t start = i;
      while (i < part.size() &&
             std::string_view("rwxXst").find(part[i]) != std::string_view::npos) {
        ++i;
      }
      spec.clauses_.push_back({who, op, part.substr(start, i - start)});
    } while (i < part.size() && (part[i] == '+' || part[i] == '-' || part[i] == '='));
    if (i != part.size())
      return fail("unexpected character");
  }
  return spec;
}

mode_t ChmodSpec::apply(mode_t mode, bool is_directory) const {
  mode_t perms = mode & 07777;
  if (octal_)
    return bits_;
  for (const Clause& c : clauses_) {
    mode_t bits = 0;
    for (char p : c.perms) {
      switch (p) {
        case 'r':
          bits |= 0444;
          break;
        case 'w':
          bits |= 0222;
          break;
        case 'x':
          bits |= 0111;
          break;
        case 'X':
          if (is_directory || (perms & 0111))
            bits |= 0111;
          break;
        case 's':
          bits |= 06000;
          break;
        case 't':
          bits |= 01000;
          break;
      }
    }
    bits &= c.who;
    switch (c.op) {
      case '+':
        perms |= bits;
        break;
      case '-':
        perms &= ~bits;
        break;
      default:
        perms = static_cast<mode_t>((perms & ~c.who) | bits);
        break;
    }
  }
  return perms;
}

}  // namespace kiln::frontend
