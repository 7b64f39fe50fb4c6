// Containerfile + build options → a plan: stages as a DAG of plain ops with variables expanded.
//
// This is where the Dockerfile's meaning is fixed: ARG scoping (global ARGs feed FROM lines and
// must be redeclared inside a stage), --build-arg overrides, ENV beating ARG, the predefined
// platform and proxy ARGs, which instructions expand variables and which leave them to the shell,
// stage references (FROM <stage>, COPY --from=<name|index|image>, RUN --mount=from=...), and
// --target pruning. The plan is data: it can be printed, hashed and scheduled, and it runs nothing.
// Thread-safe: plan_build has no shared state.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/frontend/ast.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::frontend {

struct BaseImage {
  std::vector<std::string> env;
  std::vector<std::string> onbuild;
  bool sets_shell = false;                               // its config has a Shell
  std::optional<oci::Platform> platform = std::nullopt;  // its config's os/architecture
  std::optional<oci::Digest> manifest = std::nullopt;    // the digest the reference resolved to
  // False when the image could not be looked at (a check without pulling): the rest is empty
  // and the stage's Stage::base_known is false.
  bool known = true;
};

// A --build-context NAME=VALUE: an image (docker-image://REF, oci-layout://DIR[:TAG]) or a
// local directory.
struct NamedContext {
  bool local = false;  // a directory on this machine
  // local: the directory. Otherwise the image reference as FROM takes it ("alpine:3.19",
  // "oci:/path/layout:tag").
  std::string value;
};

struct BuildOptions {
  // --build-arg NAME=VALUE, in order; a later value for the same name wins.
  std::vector<std::pair<std::string, std::string>> build_args;
  std::optional<std::string> target;  // --target; the last stage when absent
  oci::Platform build_platform = oci::host_platform();
  oci::Platform target_platform = oci::host_platform();
  // What the frontend needs to know of a base image: its config's environment ("NAME=value"), so
  // that instructions can expand variables the image sets (FROM golang → WORKDIR $GOPATH/src),
  // and its ONBUILD triggers, which run right after the FROM that names it. May be empty: then
  // image bases are taken to set nothing (as in --dry-run without a store). A kiln::Error it
  // throws is reported at the FROM line. Only the bases of stages the target needs are looked
  // up: plan_build finds those first (again when a base's ONBUILD trigger reads another stage).
  std::function<BaseImage(const std::string& image_ref, const oci::Platform& platform)> base_image;
  // With base_image: the stages whose base is looked up (all when unset). plan_build sets it.
  std::optional<std::set<size_t>> resolve_stages;
  // --build-context, by name (BuildKit's rules): a context replaces `FROM NAME` (NAME as written
  // or in its short form, "alpine" for docker.io/library/alpine:latest), a stage named NAME (its
  // instructions do not run), and `--from=NAME` / `--mount from=NAME` where no stage is named
  // NAME. A local directory can only serve COPY --from and RUN --mount from.
  std::map<std::string, NamedContext> named_contexts;
  // buildah's --from: the image (or stage name) the first FROM uses instead of the one it names.
  std::optional<std::string> first_base;
};

// The context `ref` names: by the exact name, else by the reference's short form without
// ":latest" (BuildKit's rule: `docker.io/library/alpine` finds "alpine"); null when none.
const NamedContext* find_named_context(const std::map<std::string, NamedContext>& contexts,
                                       const std::string& ref);

enum class BaseKind { kScratch, kStage, kImage };

// One step of a stage, with variables expanded where the instruction expands them (ADD, COPY,
// ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults, and the values of
// RUN --mount and of COPY/ADD flags). RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK keep their text
// for the shell; ONBUILD keeps its trigger as written.
struct StageOp {
  InstructionKind kind = InstructionKind::kRun;
  const Instruction* instruction = nullptr;  // into the Containerfile (or BuildPlan::triggers)
  bool from_onbuild = false;                 // an ONBUILD trigger of the base (image or stage)
  SourceLocation where;
  std::vector<std::string> args;
  bool json_form = false;
  std::vector<Flag> flags;
  std::vector<KeyValue> pairs;    // ENV and LABEL after expansion; ARG with its effective value
  std::vector<Heredoc> heredocs;  // COPY/ADD bodies expanded when the delimiter was unquoted
  // ARGs this step can see and their values (the stage's ARGs declared so far that have a value,
  // plus proxy build args). They belong in RUN's environment and in cache keys; ENV wins over
  // them for expansion.
  std::map<std::string, std::string> visible_args;
  // Those of visible_args set after an ENV of the same name: they replace it in RUN's
  // environment (BuildKit adds ARG values to the state's environment in order).
  std::set<std::string> args_over_env;
  std::optional<size_t> from_stage;  // COPY/ADD --from naming a stage
  std::string from_image;            // COPY --from naming an image
  std::string from_directory;        // COPY --from naming a local --build-context
  std::vector<size_t> mount_stages;  // RUN --mount=from=<stage>
};

struct Stage {
  size_t index = 0;
  std::string name;  // lower-cased AS name, empty when unnamed
  SourceLocation where;
  BaseKind base_kind = BaseKind::kScratch;
  std::string base_image;                    // expanded image reference (kImage)
  std::optional<oci::Digest> base_manifest;  // kImage, when base_image resolved it
  std::optional<size_t> base_stage;          // kStage
  oci::Platform platform;                    // --platform when given, else the target platform
  bool platform_explicit = false;
  std::vector<StageOp> ops;
  std::vector<size_t> dependencies;  // stages this stage needs: base, --from, --mount from
  std::vector<std::string> env;      // ENV at the end of the stage as the frontend knows it
  // Whether the base image's config was looked up (BuildOptions::base_image): when not, its
  // environment is unknown (env holds only what the file sets), and so is its Shell.
  bool base_known = true;
  bool base_sets_shell = false;
  std::optional<oci::Platform> base_platform;  // the base image config's, when looked up
};

// A variable an instruction reads that is not defined where it reads it (build checks).
struct UndefinedVar {
  SourceLocation where;
  std::string name;
  InstructionKind instruction;  // kFrom: a FROM line (global scope); kArg with no stage: a global
                                // ARG's default
  std::optional<size_t> stage;  // the stage it is in; nullopt in the global scope
  std::vector<std::string> defined;  // the names that were defined there (for suggestions)
};

struct BuildPlan {
  std::vector<Stage> stages;                 // every stage of the file, in file order
  size_t target = 0;                         // index of the stage the build produces
  std::vector<size_t> order;                 // the stages the target needs, dependencies first
  std::vector<std::string> global_args;      // "NAME=value" of ARGs before the first FROM
  std::vector<Warning> warnings;             // unused --build-arg, stage names read as images, ...
  std::vector<UndefinedVar> undefined_vars;  // every expansion's, in file order
  // ONBUILD triggers of base images, parsed; ops with from_onbuild point into these.
  std::vector<std::shared_ptr<const Containerfile>> triggers;
};

// Builds the plan. Throws kiln::InputError (FILE:LINE:COL) for: an instruction before the first
// FROM other than ARG, a malformed expansion, an empty base name, a variable in COPY --from, a bad
// stage index, a stage copying from itself, a cycle between stages, a malformed --platform; and
// kiln::Error for an unknown --target stage. A duplicate stage name is a warning (as in BuildKit):
// references resolve to the latest definition.
BuildPlan plan_build(const Containerfile& file, const BuildOptions& options);

// What lowering a plan into an op graph needs beyond the plan: the build's settings that become
// part of RUN ops.
struct LowerOptions {
  ExecOp::Network network = ExecOp::Network::kSandbox;           // --network
  std::vector<std::pair<std::string, std::string>> extra_hosts;  // --add-host (host, ip)
  bool allow_insecure = false;                                   // --allow security.insecure
  // --allow network.host (or --network host): RUN --network=host may share the host's network.
  bool allow_network_host = false;
  std::map<std::string, NamedContext> named_contexts;  // as given to plan_build
  // buildah's --mount: RUN --mount values added to every RUN after its own. A bad one is a
  // kiln::Error naming "--mount VALUE".
  std::vector<std::string> extra_mounts;
};

// Lowers the stages plan.order names into typed ops (op_graph.hpp). Flag values are parsed and
// checked here: a bad --mount, --network, --security, --chmod, --checksum, EXPOSE port or
// STOPSIGNAL is a kiln::InputError at its FILE:LINE:COL before anything runs.
OpGraph lower_plan(const BuildPlan& plan, const LowerOptions& options);

// Human-readable plan for `kiln build --dry-run`: one block per needed stage, in run order.
std::string describe_plan(const BuildPlan& plan);
nlohmann::ordered_json plan_to_json(const BuildPlan& plan);

// ARG names that are defined without being declared: the proxy family and the platform ARGs.
bool is_predefined_arg(std::string_view name);

}  // namespace kiln::frontend
