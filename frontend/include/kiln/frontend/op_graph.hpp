// The build as data: a graph of typed, fully parsed ops that the frontend lowers a Containerfile
// into and the solver runs. Nothing else crosses from the frontend into the solver: no
// instruction kinds, no flag strings, no stage names to resolve again.
//
// Four op kinds, as in BuildKit's LLB:
//   source  where a state or a file tree comes from: scratch, an image (reference, platform and,
//           once resolved, its manifest digest), the build context, a local --build-context;
//   exec    a RUN: the command, its build args, network and security as enums, and its mounts
//           parsed, each mount's source an input of the op;
//   file    COPY and ADD (flags parsed: chown, chmod, link, parents, exclude, checksum), and
//           WORKDIR's directory;
//   config  an image-config change (ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME, SHELL,
//           STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER), values validated.
// Every op but a source continues a state: inputs[0] is the op whose result it changes. A file
// op's source tree and an exec op's mount sources are further inputs. Stages group the chains:
// each needed stage lists its ops in order, its base (a source op or another stage's result) and
// its result (the op whose state is the stage's image).
//
// What a cache key is made of is op_definition(op) plus the keys or content digests of the op's
// inputs (the solver adds those); the position of an op in the file is not part of it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::frontend {

using OpId = size_t;

struct SourceOp {
  enum class Kind { kScratch, kImage, kContext, kDirectory };
  Kind kind = Kind::kScratch;
  oci::Platform platform;  // scratch and image
  // kImage: the reference as FROM, --from or --mount from named it, after --build-context
  // substitution ("alpine:3.19", "oci:/layout:tag"); its manifest digest when planning resolved
  // it (FROM bases in a build with a store), else the solver resolves it.
  std::string image;
  std::optional<oci::Digest> manifest;
  std::string directory;  // kDirectory: the directory of a local --build-context
  std::string name;       // kDirectory: the context's name
};

// A here-document body COPY/ADD writes or RUN feeds to its shell.
struct InlineFile {
  std::string name;
  std::string content;
};

// A --chmod value: octal ("0755", "644") or symbolic ("u+x,g-w,o=r", "a+X"), as chmod(1) reads
// it. parse throws kiln::Error for anything else.
class ChmodSpec {
 public:
  static ChmodSpec parse(std::string_view text);
  // The permission bits (with setuid/setgid/sticky) for an entry whose current mode is `mode`.
  mode_t apply(mode_t mode, bool is_directory) const;
  const std::string& text() const { return text_; }

 private:
  struct Clause {
    unsigned who;  // mask of 07777 bits the clause touches
    char op;       // '+', '-', '='
    std::string perms;
  };
  std::string text_;
  bool octal_ = false;
  mode_t bits_ = 0;
  std::vector<Clause> clauses_;
};

// RUN --mount, parsed as BuildKit reads it.
struct Mount {
  enum class Type { kBind, kCache, kTmpfs, kSecret, kSsh };
  enum class Sharing { kShared, kPrivate, kLocked };
  Type type = Type::kBind;
  // Absolute and cleaned, or relative to the working directory the step runs in (the solver
  // joins it); ssh: empty means /run/buildkit/ssh_agent.N.
  std::string target;
  std::string source;  // bind: a path in the source tree; empty means its root
  // bind: the index in the op's inputs of the tree the source is in (the build context, a
  // stage's result, an image, a local --build-context).
  std::optional<size_t> input;
  bool readonly = true;  // bind: read-only unless rw
  std::string id;        // cache: defaults to the target; secret: from the target's name; ssh
  Sharing sharing = Sharing::kShared;
  unsigned mode = 0755;  // cache directory; secret 0400 and ssh socket 0600 by default
  uint32_t uid = 0, gid = 0;
  std::optional<uint64_t> size;  // tmpfs
  bool required = false;         // secret, ssh
  std::string env;               // secret: also (or only, without a target) this variable
};

struct ExecOp {
  enum class Network { kSandbox, kNone, kHost };
  // Shell form: one element, the command line (run through the stage's SHELL when the step
  // runs); exec form: the argv.
  std::vector<std::string> command;
  bool shell_form = true;
  std::vector<InlineFile> heredocs;
  // Build args the step can see: in its environment unless ENV sets the same name, or the name
  // is in args_over_env (the ARG came after that ENV: it wins, as in BuildKit).
  std::map<std::string, std::string> build_args;
  std::set<std::string> args_over_env;
  Network network = Network::kSandbox;  // --network of RUN, else of the build
  bool insecure = false;                // --security=insecure (allowed by the build)
  std::vector<std::pair<std::string, std::string>> extra_hosts;  // --add-host of the build
  std::vector<Mount> mounts;
};

struct FileOp {
  enum class Action { kCopy, kAdd, kWorkdir };
  Action action = Action::kCopy;
  // kCopy/kAdd: sources as expanded (URLs only with kAdd) from the tree of inputs[1]; the
  // destination; here-documents. kWorkdir: `dest` is the directory as written.
  std::vector<std::string> sources;
  std::string dest;
  std::vector<InlineFile> heredocs;
  bool from_context = true;          // the source tree is the build context or a local directory
  std::optional<std::string> chown;  // names are looked up in the destination when it runs
  std::optional<ChmodSpec> chmod;
  bool link = false, parents = false;
  std::vector<std::string> exclude;
  std::optional<std::string> checksum;  // ADD of one URL: "sha256:HEX"
};

struct ConfigOp {
  enum class Field {
    kEnv,
    kLabel,
    kMaintainer,
    kExpose,
    kVolume,
    kUser,
    kStopSignal,
    kShell,
    kCmd,
    kEntrypoint,
    kHealthcheck,
    kOnbuild,
  };
  Field field = Field::kEnv;
  std::vector<std::pair<std::string, std::string>> pairs;  // ENV, LABEL
  // EXPOSE: "80/tcp" each; VOLUME: paths; SHELL: argv; CMD/ENTRYPOINT: argv, or one element in
  // shell form; USER, STOPSIGNAL, MAINTAINER, ONBUILD (the trigger's text): one value.
  std::vector<std::string> values;
  bool shell_form = false;  // CMD, ENTRYPOINT: run through the stage's SHELL
  oci::HealthConfig health;
};

struct Op {
  OpId id = 0;
  SourceLocation where;         // the instruction (a base's ONBUILD trigger: its FROM)
  std::optional<size_t> stage;  // index into OpGraph::stages; none for sources
  std::vector<OpId> inputs;     // see above
  std::string text;             // the instruction as written: history and progress
  std::variant<SourceOp, ExecOp, FileOp, ConfigOp> data;

  const char* kind_name() const;  // "source", "exec", "file", "config"
  template <class T>
  const T* as() const {
    return std::get_if<T>(&data);
  }
};

struct GraphStage {
  size_t index = 0;  // the stage's position in the Containerfile
  std::string name;  // lower-case AS name, empty when unnamed
  SourceLocation where;
  oci::Platform platform;
  OpId base = 0;              // a source op, or another stage's result
  std::string base_name;      // "scratch", the image reference, or the base stage's label
  std::vector<OpId> ops;      // in order
  OpId result = 0;            // the last op, or `base` when the stage has none
  std::vector<size_t> needs;  // indexes into OpGraph::stages this stage reads from
};

struct OpGraph {
  std::vector<Op> ops;             // op i has id i; inputs point to earlier ops
  std::vector<GraphStage> stages;  // the stages the target needs, dependencies first
  size_t target = 0;               // index into stages: the image the build produces
  // The names of every stage of the Containerfile, needed or not (for messages: a --from that
  // names no stage and no image suggests the closest).
  std::vector<std::string> stage_names;
};

// An op's definition: everything of it that its cache key is made of (kind, the op's data and
// its text), without its position or input ids.
nlohmann::ordered_json op_definition(const Op& op);

// The graph as `kiln build --dry-run --plan-format json` prints it (docs/PLAN-FORMAT.md).
nlohmann::ordered_json graph_to_json(const OpGraph& graph);

// A stage's label for progress lines and messages: its name, or "stage-N".
std::string stage_label(const GraphStage& stage);

}  // namespace kiln::frontend
