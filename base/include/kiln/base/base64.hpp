// Standard base64 (RFC 4648 section 4: the + and / alphabet, padded with '='), as Go's
// base64.StdEncoding writes it: the form of registry auth files and cosign signatures.
// Both functions are pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

std::string base64_encode(std::string_view bytes);

// The bytes `text` encodes. Strict: the length is a multiple of 4, every character is in the
// alphabet, and '=' appears only as one or two padding characters at the end; no whitespace.
// The empty text encodes nothing. Throws kiln::Error saying what is wrong, without quoting the
// text (it may be a secret).
std::string base64_decode(std::string_view text);

}  // namespace kiln
