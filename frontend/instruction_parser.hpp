// One logical line → one Instruction (without here-document bodies, which the caller reads from
// the source after it knows the instruction opens them).
#pragma once

#include "kiln/frontend/ast.hpp"
#include "source_reader.hpp"

namespace kiln::frontend::detail {

// Parses `line` with the ANTLR grammar, checks the flags against the instruction's flag set, and
// decodes the arguments in the instruction's form. `escape` is the file's escape character.
// Throws InputError at the offending token for an unknown instruction, an unknown, repeated or
// malformed flag, or arguments the instruction cannot take.
Instruction parse_instruction(const LogicalLine& line, char escape);

// Whether a parsed instruction may carry here-documents (RUN, COPY, ADD in non-JSON form, also as
// an ONBUILD trigger).
bool can_contain_heredoc(const Instruction& instruction);

}  // namespace kiln::frontend::detail
