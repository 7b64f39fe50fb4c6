// The Containerfile parser, instruction by instruction, from the Dockerfile reference and
// BuildKit's parser behaviour.
#include "kiln/frontend/parser.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln::frontend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Containerfile parse(std::string_view text) {
  return parse_containerfile(text, "Containerfile");
}

// The file's single instruction, by value: the file is usually a temporary.
Instruction only(const Containerfile& file) {
  EXPECT_EQ(file.instructions.size(), 1u);
  return file.instructions.empty() ? Instruction{} : file.instructions.front();
}

// Parses `text`, expecting an InputError at line:col whose message contains `message`.
void expect_error(std::string_view text, int line, int col, const std::string& message) {
  try {
    parse(text);
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, line) << e.what();
    EXPECT_EQ(e.where().column, col) << e.what();
    EXPECT_THAT(e.detail(), HasSubstr(message)) << e.what();
    EXPECT_EQ(e.where().file, "Containerfile");
  }
}

TEST(Parser, EveryInstructionKeywordInAnyCase) {
  Containerfile file = parse(
      "from alpine\nRun echo\nCmd x\nlabel a=b\nMaintainer me\nexpose 80\nenv A=1\nadd a b\n"
      "COPY a b\nentrypoint x\nvolume /v\nuser u\nworkdir /w\narg A\nonbuild RUN x\n"
      "stopsignal SIGTERM\nhealthcheck NONE\nshell [\"sh\"]\n");
  std::vector<InstructionKind> kinds;
  for (Instruction ins : file.instructions)
    kinds.push_back(ins.kind);
  EXPECT_THAT(
      kinds,
      ElementsAre(InstructionKind::kFrom, InstructionKind::kRun, InstructionKind::kCmd,
                  InstructionKind::kLabel, InstructionKind::kMaintainer, InstructionKind::kExpose,
                  InstructionKind::kEnv, InstructionKind::kAdd, InstructionKind::kCopy,
                  InstructionKind::kEntrypoint, InstructionKind::kVolume, InstructionKind::kUser,
                  InstructionKind::kWorkdir, InstructionKind::kArg, InstructionKind::kOnbuild,
                  InstructionKind::kStopsignal, InstructionKind::kHealthcheck,
                  InstructionKind::kShell));
  EXPECT_EQ(file.instructions[1].keyword, "Run");
}

TEST(Parser, UnknownInstructionIsAnErrorAtItsPosition) {
  expect_error("FROM a\n  COPPY x y\n", 2, 3, "unknown instruction: COPPY");
  expect_error("FROM a\nRUNX true\n", 2, 1, "unknown instruction: RUNX");
}

TEST(Parser, FromForms) {
  EXPECT_THAT(only(parse("FROM alpine:3.20")).args, ElementsAre("alpine:3.20"));
  Instruction named = only(parse("FROM --platform=$BUILDPLATFORM golang:1.22 as Build"));
  EXPECT_THAT(named.args, ElementsAre("golang:1.22", "as", "Build"));
  ASSERT_EQ(named.flags.size(), 1u);
  EXPECT_EQ(named.flags[0].name, "platform");
  EXPECT_EQ(named.flags[0].value, "$BUILDPLATFORM");
  EXPECT_EQ(named.flags[0].where.column, 6);
  expect_error("FROM a b", 1, 6, "FROM requires either one or three arguments");
  expect_error("FROM a ASS b", 1, 8, "expected AS, found \"ASS\"");
  expect_error("FROM a AS 1st", 1, 11, "invalid name for build stage");
  expect_error("FROM", 1, 1, "FROM requires either one or three arguments");
}

TEST(Parser, ExecAndShellForms) {
  Instruction exec = only(parse("RUN [\"echo\", \"a b\"]"));
  EXPECT_TRUE(exec.json_form);
  EXPECT_THAT(exec.args, ElementsAre("echo", "a b"));
  Instruction shell = only(parse("CMD echo \"hi\"  there"));
  EXPECT_FALSE(shell.json_form);
  EXPECT_THAT(shell.args, ElementsAre("echo \"hi\"  there"));
  // Invalid JSON falls back to the shell form, exactly as written.
  Instruction fallback = only(parse("ENTRYPOINT [\"a\", 'b']"));
  EXPECT_FALSE(fallback.json_form);
  EXPECT_THAT(fallback.args, ElementsAre("[\"a\", 'b']"));
  EXPECT_FALSE(only(parse("CMD [\"a\"] extra")).json_form);
  // Valid JSON that is not all strings is an error, not a fallback.
  expect_error("CMD [\"a\", 1]", 1, 5, "arrays must be comprised of strings only");
  // Empty exec form is allowed for CMD and ENTRYPOINT.
  EXPECT_TRUE(only(parse("CMD []")).json_form);
  expect_error("RUN", 1, 1, "RUN requires at least one argument");
}

TEST(Parser, JsonEscapesAreDecoded) {
  Instruction ins = only(parse(R"(CMD ["echo", "tab\there", "\u00e9", "q\"uote"])"));
  EXPECT_THAT(ins.args, ElementsAre("echo", "tab\there", "\xC3\xA9", "q\"uote"));
}

TEST(Parser, ShellRequiresJson) {
  EXPECT_THAT(only(parse("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]")).args,
              ElementsAre("/bin/bash", "-o", "pipefail", "-c"));
  expect_error("SHELL /bin/bash -c", 1, 7, "SHELL requires the arguments to be in JSON form");
}

TEST(Parser, EnvAndLabelForms) {
  Instruction env = only(parse("ENV A=1 B=\"two words\" C=three\\ words D="));
  ASSERT_EQ(env.pairs.size(), 4u);
  EXPECT_EQ(env.pairs[0].key, "A");
  EXPECT_EQ(env.pairs[1].value, "\"two words\"");  // quotes go at expansion time
  EXPECT_EQ(env.pairs[2].value, "three\\ words");
  EXPECT_EQ(env.pairs[3].value, "");
  Instruction legacy = only(parse("ENV PATH_LIST  /a /b  c"));
  ASSERT_EQ(legacy.pairs.size(), 1u);
  EXPECT_EQ(legacy.pairs[0].key, "PATH_LIST");
  EXPECT_EQ(legacy.pairs[0].value, "/a /b  c");
  Instruction label = only(parse("LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0"));
  ASSERT_EQ(label.pairs.size(), 2u);
  EXPECT_EQ(label.pairs[0].key, "\"com.example.vendor\"");
  expect_error("ENV ONLY", 1, 5, "ENV must have two arguments");
  expect_error("ENV A=1 \\\n    =3000", 2, 5, "ENV names can not be blank");
  expect_error("ENV =x", 1, 5, "ENV names can not be blank");
  expect_error("LABEL a=b c", 1, 11, "can't find = in \"c\"");
  expect_error("LABEL", 1, 1, "LABEL requires at least one argument");
}

TEST(Parser, ArgForms) {
  Instruction arg = only(parse("ARG A B=2 C=\"x y\""));
  ASSERT_EQ(arg.pairs.size(), 3u);
  EXPECT_FALSE(arg.pairs[0].value.has_value());
  EXPECT_EQ(arg.pairs[1].value, "2");
  EXPECT_EQ(arg.pairs[2].value, "\"x y\"");
  expect_error("ARG", 1, 1, "ARG requires at least one argument");
  expect_error("ARG =1", 1, 5, "ARG names can not be blank");
}

TEST(Parser, CopyAndAddFlags) {
  Instruction copy = only(
      parse("COPY --from=build --chown=app:app --chmod=0755 --link --exclude=*.md --exclude=*.txt "
            "--parents a b /dst/"));
  EXPECT_EQ(copy.find_flag("from")->value, "build");
  EXPECT_EQ(copy.find_flag("chown")->value, "app:app");
  EXPECT_FALSE(copy.find_flag("link")->value.has_value());
  EXPECT_EQ(copy.find_flags("exclude").size(), 2u);
  EXPECT_THAT(copy.args, ElementsAre("a", "b", "/dst/"));
  Instruction add =
      only(parse("ADD --checksum=sha256:abc --keep-git-dir=true --link=false https://x/y.tgz /y"));
  EXPECT_EQ(add.find_flag("keep-git-dir")->value, "true");
  Instruction json = only(parse("COPY [\"my file.txt\", \"/dest dir/\"]"));
  EXPECT_TRUE(json.json_form);
  EXPECT_THAT(json.args, ElementsAre("my file.txt", "/dest dir/"));
  expect_error("COPY --frm=x a b", 1, 6, "unknown flag --frm for COPY");
  expect_error("COPY --link=maybe a b", 1, 6, "expecting boolean value for flag --link");
  expect_error("COPY --from=a --from=b x y", 1, 15, "duplicate flag specified: --from");
  expect_error("COPY --from a b", 1, 6, "missing a value on flag --from");
  expect_error("COPY onlyone", 1, 6, "COPY requires at least two arguments");
  expect_error("ADD --from=x a b", 1, 5, "unknown flag --from for ADD");
  expect_error("WORKDIR --x=1 /a", 1, 9, "WORKDIR (it takes no flags)");
}

TEST(Parser, FlagValuesLoseQuotesAndDoubleDashEndsFlags) {
  Instruction run =
      only(parse("RUN --mount=type=secret,id=\"my id\" --network=none -- --not-a-flag"));
  EXPECT_EQ(run.find_flag("mount")->value, "type=secret,id=my id");
  EXPECT_EQ(run.find_flag("network")->value, "none");
  EXPECT_THAT(run.args, ElementsAre("--not-a-flag"));
  EXPECT_THAT(only(parse("RUN -x")).args, ElementsAre("-x"));
  EXPECT_EQ(only(parse("RUN --mount=id=a\"b\" x")).find_flag("mount")->value, "id=ab");
  expect_error("RUN --network=none --mount=id=\"x y", 1, 20, "unterminated quote in flag");
}

TEST(Parser, RunFlags) {
  Instruction run = only(parse(
      "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=tmpfs,target=/t "
      "--security=insecure make"));
  EXPECT_EQ(run.find_flags("mount").size(), 2u);
  EXPECT_EQ(run.find_flag("security")->value, "insecure");
  expect_error("RUN --chown=a make", 1, 5, "unknown flag --chown for RUN");
}

TEST(Parser, StringInstructionsKeepTheWholeRest) {
  EXPECT_THAT(only(parse("USER  app:staff ")).args, ElementsAre("app:staff"));
  EXPECT_THAT(only(parse("WORKDIR /my dir")).args, ElementsAre("/my dir"));
  EXPECT_THAT(only(parse("STOPSIGNAL SIGQUIT")).args, ElementsAre("SIGQUIT"));
  EXPECT_THAT(only(parse("MAINTAINER Jane <j@example.com>")).args,
              ElementsAre("Jane <j@example.com>"));
  expect_error("USER", 1, 1, "USER requires exactly one argument");
  EXPECT_THAT(only(parse("EXPOSE 80 443/tcp   53/udp")).args,
              ElementsAre("80", "443/tcp", "53/udp"));
  EXPECT_THAT(only(parse("VOLUME /a /b")).args, ElementsAre("/a", "/b"));
  EXPECT_THAT(only(parse("VOLUME [\"/a b\"]")).args, ElementsAre("/a b"));
  expect_error("VOLUME [\"\"]", 1, 8, "VOLUME specified can not be an empty string");
}

TEST(Parser, Healthcheck) {
  Instruction hc = only(
      parse("HEALTHCHECK --interval=30s --timeout=3s --start-period=1m5s --start-interval=500ms "
            "--retries=3 CMD curl -f http://localhost/ || exit 1"));
  EXPECT_EQ(hc.health_type, "CMD");
  EXPECT_THAT(hc.args, ElementsAre("curl -f http://localhost/ || exit 1"));
  Instruction exec = only(parse("HEALTHCHECK cmd [\"/bin/check\"]"));
  EXPECT_TRUE(exec.json_form);
  EXPECT_EQ(only(parse("HEALTHCHECK none")).health_type, "NONE");
  expect_error("HEALTHCHECK NONE x", 1, 18, "HEALTHCHECK NONE takes no arguments");
  expect_error("HEALTHCHECK PING x", 1, 13, "unknown type \"PING\" in HEALTHCHECK");
  expect_error("HEALTHCHECK --interval=5x CMD true", 1, 13, "invalid duration for --interval");
  expect_error("HEALTHCHECK --timeout=10us CMD true", 1, 13, "cannot be less than 1ms");
  expect_error("HEALTHCHECK --retries=-1 CMD true", 1, 13, "--retries cannot be negative");
  expect_error("HEALTHCHECK CMD", 1, 13, "HEALTHCHECK CMD requires a command");
}

TEST(Parser, Onbuild) {
  Instruction ins = only(parse("ONBUILD  COPY --chown=1:1 . /app"));
  ASSERT_EQ(ins.trigger.size(), 1u);
  EXPECT_EQ(ins.trigger[0].kind, InstructionKind::kCopy);
  EXPECT_EQ(ins.trigger[0].where.column, 10);
  EXPECT_EQ(ins.trigger[0].flags[0].where.column, 15);
  expect_error("ONBUILD ONBUILD RUN x", 1, 9, "chaining ONBUILD via `ONBUILD ONBUILD`");
  expect_error("ONBUILD FROM x", 1, 9, "FROM isn't allowed as an ONBUILD trigger");
  expect_error("ONBUILD MAINTAINER x", 1, 9, "MAINTAINER isn't allowed as an ONBUILD trigger");
  expect_error("ONBUILD BOGUS x", 1, 9, "unknown instruction: BOGUS");
}

TEST(Parser, Directives) {
  Containerfile file =
      parse("# syntax=docker/dockerfile:1\n#  Escape = `\n# check=skip=all\nFROM a\n");
  ASSERT_EQ(file.directives.size(), 3u);
  EXPECT_EQ(file.directive("syntax"), "docker/dockerfile:1");
  EXPECT_EQ(file.directive("check"), "skip=all");
  EXPECT_EQ(file.escape, '`');
  // After a comment, a blank line or an unknown directive, directives are plain comments.
  EXPECT_EQ(parse("# hello\n# escape=`\nFROM a").escape, '\\');
  EXPECT_EQ(parse("\n# escape=`\nFROM a").escape, '\\');
  EXPECT_EQ(parse("# foo=bar\n# escape=`\nFROM a").escape, '\\');
  EXPECT_EQ(parse("FROM a\n# escape=`\n").escape, '\\');
  expect_error("# escape=x\nFROM a", 1, 10, "invalid escape token 'x'");
  expect_error("# escape=`\n# escape=\\\nFROM a", 2, 1, "only one escape parser directive");
}

TEST(Parser, LineContinuations) {
  Containerfile file = parse(
      "FROM a\n"
      "RUN apt-get update && \\\n"
      "    # a comment inside the continuation\n"
      "\n"
      "    apt-get install -y x \\  \n"
      "  && echo done\n"
      "CMD x\n");
  ASSERT_EQ(file.instructions.size(), 3u);
  Instruction run = file.instructions[1];
  EXPECT_THAT(run.args, ElementsAre("apt-get update &&     apt-get install -y x   && echo done"));
  EXPECT_EQ(run.where.line, 2);
  EXPECT_EQ(run.end_line, 6);
  EXPECT_EQ(file.instructions[2].where.line, 7);
  ASSERT_EQ(file.warnings.size(), 1u);
  EXPECT_EQ(file.warnings[0].where.line, 4);
  // At the end of the file a continuation ends the instruction, as in BuildKit, with a warning;
  // only one that leaves the keyword alone is an error.
  Containerfile truncated = parse("FROM a\nRUN echo \\\n\n# only a comment\n");
  ASSERT_EQ(truncated.instructions.size(), 2u);
  EXPECT_THAT(truncated.instructions[1].args, ElementsAre("echo"));
  ASSERT_EQ(truncated.warnings.size(), 2u);
  EXPECT_THAT(truncated.warnings[0].message, HasSubstr("line continuation at end of file"));
  EXPECT_THAT(truncated.warnings[1].message, HasSubstr("Empty continuation line"));
  expect_error("FROM a\nRUN \\\n", 2, 5, "unexpected end of file after line continuation");
}

// BuildKit's "trailing-backslash" case: an escaped escape character at the end of a line is
// text, not a continuation; a single one still continues.
TEST(Parser, AnEscapedEscapeAtTheEndOfALineDoesNotContinueIt) {
  Containerfile file = parse("FROM a\nENV C a\\\\b\\\\\nENV D x \\\n  y\n");
  ASSERT_EQ(file.instructions.size(), 3u);
  ASSERT_EQ(file.instructions[1].pairs.size(), 1u);
  EXPECT_EQ(file.instructions[1].pairs[0].value, "a\\\\b\\\\");
  EXPECT_EQ(file.instructions[2].where.line, 3);
  EXPECT_EQ(file.instructions[2].end_line, 4);
  Containerfile backtick = parse("# escape=`\nFROM a\nENV C a``\nENV D x\n");
  EXPECT_EQ(backtick.instructions.size(), 3u);
}

TEST(Parser, BacktickEscape) {
  Containerfile file = parse(
      "# escape=`\nFROM mcr.microsoft.com/windows/servercore\n"
      "COPY testfile.txt c:\\\nRUN dir c:\\ `\n  /s\n");
  ASSERT_EQ(file.instructions.size(), 3u);
  EXPECT_THAT(file.instructions[1].args, ElementsAre("testfile.txt", "c:\\"));
  EXPECT_THAT(file.instructions[2].args, ElementsAre("dir c:\\   /s"));
}

TEST(Parser, PositionsPointIntoContinuationLines) {
  try {
    parse("FROM a\nCOPY --from=x \\\n     --frm=y a b\n");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, 3);
    EXPECT_EQ(e.where().column, 6);
  }
}

TEST(Parser, CrlfAndBom) {
  Containerfile file = parse("\xEF\xBB\xBF# escape=`\r\nFROM a\r\nRUN echo `\r\n  hi\r\n");
  EXPECT_EQ(file.escape, '`');
  ASSERT_EQ(file.instructions.size(), 2u);
  EXPECT_THAT(file.instructions[1].args, ElementsAre("echo   hi"));
}

TEST(Parser, InvalidUtf8IsReportedWithItsPosition) {
  expect_error("FROM a\nRUN echo \xC3\xA9 \xFF\n", 2, 12, "invalid UTF-8");
  expect_error("FROM a\nLABEL x=\xED\xA0\x80\n", 2, 9, "invalid UTF-8");  // a surrogate
  expect_error("\xC0\xAF", 1, 1, "invalid UTF-8");                        // overlong
}

TEST(Parser, ColumnsCountCodePoints) {
  expect_error("LABEL é=1 ü", 1, 11, "can't find =");
  expect_error("COPY --é=1 a b", 1, 6, "unknown flag --é");
}

TEST(Parser, Heredocs) {
  Containerfile file = parse(
      "FROM a\n"
      "RUN <<EOF\n"
      "echo $HOME\n"
      "EOF\n"
      "RUN <<-\"END\" python3\n"
      "\tprint('hi')\n"
      "\tEND\n"
      "COPY <<one.txt 3<<'two' /dst/\n"
      "1\n"
      "one.txt\n"
      "2\n"
      "two\n"
      "CMD x\n");
  ASSERT_EQ(file.instructions.size(), 5u);
  Instruction first = file.instructions[1];
  ASSERT_EQ(first.heredocs.size(), 1u);
  EXPECT_EQ(first.heredocs[0].name, "EOF");
  EXPECT_EQ(first.heredocs[0].content, "echo $HOME\n");
  EXPECT_TRUE(first.heredocs[0].expand);
  EXPECT_EQ(first.heredocs[0].where.line, 3);
  EXPECT_EQ(first.end_line, 4);
  Instruction chomped = file.instructions[2];
  ASSERT_EQ(chomped.heredocs.size(), 1u);
  EXPECT_TRUE(chomped.heredocs[0].chomp);
  EXPECT_FALSE(chomped.heredocs[0].expand);
  EXPECT_EQ(chomped.heredocs[0].content, "print('hi')\n");
  Instruction copy = file.instructions[3];
  ASSERT_EQ(copy.heredocs.size(), 2u);
  EXPECT_EQ(copy.heredocs[1].name, "two");
  EXPECT_EQ(copy.heredocs[1].fd, 3u);
  EXPECT_FALSE(copy.heredocs[1].expand);
  EXPECT_EQ(copy.heredocs[1].content, "2\n");
  EXPECT_EQ(file.instructions[4].where.line, 13);
}

TEST(Parser, HeredocsOnlyWhereBuildKitReadsThem) {
  // Exec form, other instructions and here-strings do not open here-documents.
  EXPECT_EQ(parse("RUN [\"cat\", \"<<EOF\"]\nCMD x\n").instructions.size(), 2u);
  expect_error("RUN [\"cat\", \"<<EOF\"]\nEOF\n", 2, 1, "unknown instruction: EOF");
  EXPECT_TRUE(only(parse("RUN cat <<<word")).heredocs.empty());
  Containerfile file = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
  ASSERT_EQ(file.instructions.size(), 2u);
  ASSERT_EQ(file.instructions[1].trigger[0].heredocs.size(), 1u);
  expect_error("FROM a\nRUN <<EOF\necho\n", 2, 5, "unterminated heredoc");
  // <<- only strips tabs: a terminator indented with spaces does not end the document.
  expect_error("FROM a\nRUN <<-EOF\n  echo\n  EOF\n", 2, 5, "unterminated heredoc");
}

TEST(Parser, CommentsAndBlankLines) {
  Containerfile file =
      parse("\n\n# comment\n   # indented comment\nRUN echo a # not a comment\n\n");
  ASSERT_EQ(file.instructions.size(), 1u);
  EXPECT_THAT(file.instructions[0].args, ElementsAre("echo a # not a comment"));
}

TEST(Parser, ReadContainerfileReportsMissingFiles) {
  EXPECT_THROW(read_containerfile("/nonexistent/Containerfile"), Error);
  EXPECT_THROW(read_containerfile("/"), Error);
}

}  // namespace
}  // namespace kiln::frontend
