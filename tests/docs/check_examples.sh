#!/usr/bin/env bash
# The examples of docs/RUNNING-ANYWHERE.md (examples/kubernetes, examples/ci) and the kiln
# command lines in them and in the docs, checked offline by check_examples.py (which says how).
# $1: the kiln binary. Needs python3 with PyYAML (Debian's python3-yaml); uses shellcheck and
# kubectl when they are installed.
set -euo pipefail
kiln=$1
here=$(cd "$(dirname "$0")" && pwd)
# The first python3 that has PyYAML: the one on PATH, else Debian's (python3-yaml is for it).
for python in python3 /usr/bin/python3; do
  if command -v "$python" >/dev/null && "$python" -c 'import yaml' 2>/dev/null; then
    exec "$python" "$here/check_examples.py" --kiln "$kiln"
  fi
done
echo "FAIL: no python3 with PyYAML (scripts/install-deps.sh installs python3-yaml)" >&2
exit 1
