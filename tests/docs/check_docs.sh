#!/usr/bin/env bash
# The generated shell completions and man pages work: bash loads the completion (complete -p
# kiln) and completes commands, flags and subcommands; zsh and fish parse theirs when they are
# installed; man renders every page without a warning. $1: the build's cli/docs directory.
set -euo pipefail
docs=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

complete_line() {  # words... → what bash completes for the last one
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kiln; echo "${COMPREPLY[*]}"' \
    _ "$docs/kiln.bash" "$@"
}
bash -c "source '$docs/kiln.bash'; complete -p kiln" | grep -q -- '-F _kiln kiln' ||
  fail "bash did not register the completion"
[[ "$(complete_line kiln bu)" == "build" ]] || fail "kiln bu<TAB>: $(complete_line kiln bu)"
[[ " $(complete_line kiln build --cache-t) " == *" --cache-ttl "* ]] ||
  fail "kiln build --cache-t<TAB>: $(complete_line kiln build --cache-t)"
[[ "$(complete_line kiln manifest ann)" == "annotate" ]] ||
  fail "kiln manifest ann<TAB>: $(complete_line kiln manifest ann)"
[[ " $(complete_line kiln push --tls) " == *" --tls-verify "* ]] || fail "kiln push --tls<TAB>"
if command -v zsh >/dev/null; then zsh -n "$docs/_kiln" || fail "zsh cannot parse _kiln"; fi
if command -v fish >/dev/null; then fish -n "$docs/kiln.fish" || fail "fish cannot parse kiln.fish"; fi
grep -q "__fish_seen_subcommand_from build' -s t -l tag" "$docs/kiln.fish" ||
  fail "kiln.fish lacks build's --tag"

pages=0
for page in "$docs"/man/*.1; do
  out=$(MANWIDTH=100 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >/dev/null) ||
    fail "man cannot render $page"
  [[ -z "$out" ]] || fail "man warns about $page: $out"
  pages=$((pages + 1))
done
MANWIDTH=100 man -l "$docs/man/kiln-build.1" 2>/dev/null | grep -q -- '--cache-ttl' ||
  fail "kiln-build(1) does not document --cache-ttl"
MANWIDTH=100 man -l "$docs/man/kiln.1" 2>/dev/null | grep -q 'kiln-manifest' ||
  fail "kiln(1) does not list kiln-manifest"
echo "completions (bash$(command -v zsh >/dev/null && echo ', zsh')$(command -v fish >/dev/null && echo ', fish')) and $pages man pages OK"
