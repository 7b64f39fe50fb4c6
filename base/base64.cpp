#include "kiln/base/base64.hpp"

#include <openssl/evp.h>

#include <climits>

#include "kiln/base/error.hpp"

namespace kiln {

namespace {

bool in_alphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  if (bytes.size() > INT_MAX / 4 * 3)
    throw Error("base64: " + std::to_string(bytes.size()) + " bytes are too many to encode");
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock adds a NUL
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    throw Error("not valid base64: its length (" + std::to_string(text.size()) +
                ") is not a multiple of 4");
  }
  if (text.size() > INT_MAX)
    throw Error("not valid base64: too long");
  // EVP_DecodeBlock accepts '=' anywhere and skips surrounding whitespace, so the form is checked
  // here; it also counts the bytes the padding stands for, which are dropped below.
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=')
    ++padding;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    if (!in_alphabet(text[i])) {
      throw Error("not valid base64: character " + std::to_string(i + 1) +
                  " is not in its alphabet");
    }
  }
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0)
    throw Error("not valid base64");
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

}  // namespace kiln
