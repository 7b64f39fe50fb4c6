#!/usr/bin/env bash
# kiln against BuildKit (Debian's docker.io 20.10: dockerd's embedded BuildKit, on a private
# socket and data root started and stopped here) and buildah, in one run, on the workloads of
# issue 15:
#   big     a context of FILES files of about SIZE_MIB (256 incompressible files, the rest small
#           text files), `COPY src/ /src/` then a RUN that reads one file, on the busybox base:
#           cold build, rebuild after one small file's content changed, fully cached rebuild
#   small   a 9-step Containerfile (ENV, LABEL, WORKDIR, COPY of 500 files, RUN, COPY, ...) on
#           the busybox base: cold and fully cached
# Prints a table of seconds with BuildKit/kiln and buildah/kiln ratios (above 1: kiln faster).
#   bench/vs_buildkit.sh [SIZE_MIB] [FILES]      defaults 1024 and 20000
# Needs: a built kiln (build/cli/kiln or $KILN), docker.io, buildah, runc, busybox-static, python3,
# root (dockerd), and about 3 x SIZE_MIB free under $TMPDIR plus buildah's vfs copies.
# Not a pass/fail test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
size_mib=${1:-1024}
files=${2:-20000}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-bk-XXXXXX")
dockerd_pid=
cleanup() {
  if [[ -n $dockerd_pid ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
    kill "$dockerd_pid"
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export KILN_ROOT=$work/kiln-root

# --- the base image, for all three ------------------------------------------------------------
"$src/examples/busybox/prepare.sh" "$work/busybox" >/dev/null
"$kiln" build -q -t busybox:latest "$work/busybox" >/dev/null 2>&1
"$kiln" save --format docker-archive -o "$work/busybox-docker.tar" busybox:latest
"$kiln" save --format oci-archive -o "$work/busybox-oci.tar" busybox:latest
bargs=(--root "$work/broot" --runroot "$work/brun" --storage-driver vfs)
buildah "${bargs[@]}" pull -q "oci-archive:$work/busybox-oci.tar" >/dev/null
buildah "${bargs[@]}" tag "$(buildah "${bargs[@]}" images -q | head -1)" localhost/busybox:latest

# --- dockerd on a private socket and data root --------------------------------------------------
sock=$work/docker.sock
/usr/sbin/dockerd --data-root "$work/docker-data" --exec-root "$work/docker-exec" \
  --pidfile "$work/dockerd.pid" -H "unix://$sock" --iptables=false --bridge=none \
  >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker=(/usr/bin/docker -H "unix://$sock")
for _ in $(seq 1 300); do "${docker[@]}" info >/dev/null 2>&1 && break; sleep 0.2; done
"${docker[@]}" info >/dev/null || { tail "$work/dockerd.log"; exit 1; }
"${docker[@]}" load -q -i "$work/busybox-docker.tar" >/dev/null

# --- the contexts ---------------------------------------------------------------------------------
python3 - "$work/big" "$size_mib" "$files" <<'PY'
import os, sys, random
ctx, mib, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
large = min(256, files // 2)
for i in range(files):
    d = f"{ctx}/src/d{i % 200:03d}/e{(i // 200) % 10}"
    os.makedirs(d, exist_ok=True)
    if i < large:
        data = os.urandom(mib * 1024 * 1024 // large)
    else:
        data = ("line %d of file %d\n" % (rng.randrange(1000), i)).encode() * rng.randrange(5, 50)
    with open(f"{d}/f{i}", "wb") as f:
        f.write(data)
def path(i):
    return f"src/d{i % 200:03d}/e{(i // 200) % 10}/f{i}"
with open(f"{ctx}/Containerfile", "w") as f:
    f.write("FROM busybox:latest\nCOPY src/ /src/\nRUN wc -c /%s > /size\n" % path(files - 2))
with open(f"{ctx}/../edit-path", "w") as f:
    f.write(f"{ctx}/{path(files - 1)}")
PY
python3 - "$work/small" <<'PY'
import os, sys
ctx = sys.argv[1]
for i in range(500):
    d = f"{ctx}/app/m{i % 20:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i}.txt", "w") as f:
        f.write("module %d\n" % i * 20)
with open(f"{ctx}/Containerfile", "w") as f:
    f.write("FROM busybox:latest\nENV APP=/app MODE=release\nLABEL org.example.team=bench\n"
            "WORKDIR /app\nCOPY app/ /app/\nRUN find /app -type f | wc -l > /count\n"
            "COPY app/m00/f0.txt /first\nUSER 1000\nCMD [\"cat\", \"/count\"]\n")
PY
cp "$work/big/Containerfile" "$work/big/Dockerfile"
cp "$work/small/Containerfile" "$work/small/Dockerfile"

# --- timing ---------------------------------------------------------------------------------------
now() { date +%s.%N; }
declare -A t
time_it() {  # NAME COMMAND...
  local name=$1 start end
  shift
  start=$(now)
  "$@" >"$work/last.log" 2>&1 || { echo "$name failed:"; tail -20 "$work/last.log"; exit 1; }
  end=$(now)
  t[$name]=$(echo "$end - $start" | bc)
}
# Every builder's RUN steps share the host's network, as dockerd here has no bridge: the figures
# compare the builders, not their network set-up (kiln's default private network costs about
# 20 ms per RUN step for pasta).
k_build() { "$kiln" build -q --network host -t bench:1 "$1"; }
bk_build() { DOCKER_BUILDKIT=1 "${docker[@]}" build -q --network host -t bench:1 "$1"; }
ba_build() { buildah "${bargs[@]}" build --runtime runc --layers -q --network host -t bench:1 "$1"; }
edit() { echo "edit $1" >>"$(cat "$work/edit-path")"; }

for tool in k bk ba; do
  time_it "$tool.big.cold" "${tool}_build" "$work/big"
  edit "$tool"
  time_it "$tool.big.edit" "${tool}_build" "$work/big"
  time_it "$tool.big.cached" "${tool}_build" "$work/big"
  time_it "$tool.small.cold" "${tool}_build" "$work/small"
  time_it "$tool.small.cached" "${tool}_build" "$work/small"
done

ratio() { echo "scale=2; $1 / $2" | bc; }
echo "big: $size_mib MiB in $files files; small: 9 steps, 500 files (seconds)"
printf '%-14s %9s %9s %9s %8s %8s\n' workload kiln BuildKit buildah "BK/kiln" "ba/kiln"
for w in big.cold big.edit big.cached small.cold small.cached; do
  printf '%-14s %9.3f %9.3f %9.3f %8s %8s\n' "$w" \
    "${t[k.$w]}" "${t[bk.$w]}" "${t[ba.$w]}" "$(ratio "${t[bk.$w]}" "${t[k.$w]}")" \
    "$(ratio "${t[ba.$w]}" "${t[k.$w]}")"
done
