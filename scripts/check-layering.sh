#!/usr/bin/env bash
# Checks the module dependency rule of docs/ARCHITECTURE.md on the sources' #include lines:
#   cli → session → exporter, solver → frontend, snapshotter, runner → oci → base
# and that the solver sees plans only as op graphs (no Containerfile syntax headers).
# Prints every violation as FILE:LINE: and exits 1 when there is one.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"

# The modules each module may include, besides itself.
declare -A allowed=(
  [base]=""
  [oci]="base"
  [frontend]="base oci"
  [snapshotter]="base oci"
  [runner]="base oci"
  [solver]="base oci frontend snapshotter runner"
  [exporter]="base oci snapshotter"
  [session]="base oci frontend snapshotter runner solver exporter"
  [cli]="base oci frontend snapshotter runner solver exporter session"
)
status=0
for module in "${!allowed[@]}"; do
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    used=$(sed -E 's|.*#include "kiln/([a-z]+)/.*|\1|' <<<"$rest")
    if [[ "$used" != "$module" && " ${allowed[$module]} " != *" $used "* ]]; then
      echo "$file:$line: $module includes $used (allowed: ${allowed[$module]:-nothing})"
      status=1
    fi
  done < <(grep -rnE '#include "kiln/[a-z]+/' "$module" --include='*.cpp' --include='*.hpp' || true)
done
# The solver runs typed ops: the AST, the planner and the parser are the frontend's business.
while IFS= read -r hit; do
  echo "$hit: the solver must not include Containerfile syntax (use kiln/frontend/op_graph.hpp)"
  status=1
done < <(grep -rnE '#include "kiln/frontend/(ast|build_plan|parser|instruction_parser)\.hpp"' \
  solver || true)
if [[ $status == 0 ]]; then
  echo "module layering: ok"
fi
exit $status
