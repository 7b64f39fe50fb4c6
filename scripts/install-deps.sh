#!/usr/bin/env bash
# Installs everything kiln needs to build and test on Debian 12, from Debian's packages only.
# Run as root. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  ca-certificates cmake ninja-build g++ make pkg-config git \
  antlr4 default-jre-headless libantlr4-runtime-dev uuid-dev \
  libarchive-dev libzstd-dev libssl-dev libcurl4-openssl-dev nlohmann-json3-dev libxxhash-dev \
  zlib1g-dev libboost-program-options-dev libgtest-dev libgmock-dev libseccomp-dev libcap-dev \
  libtomlplusplus-dev libsodium-dev librpm-dev libisal-dev man-db python3-yaml shellcheck \
  clang-16 libclang-rt-16-dev \
  uidmap busybox-static skopeo umoci podman runc crun buildah zstd tar time bc \
  docker-registry apache2-utils python3 qemu-user-static binfmt-support openssh-client openssl rpm \
  passt slirp4netns
# docker.io: the reference BuildKit (dockerd's embedded one) of tests/conformance, which starts
# its own dockerd on a private socket and data root. The package's system daemon is not wanted:
# a policy-rc.d (unless the machine has one) keeps the install from starting it.
if dpkg -s docker.io >/dev/null 2>&1; then
  :
elif [[ -e /usr/sbin/policy-rc.d ]]; then
  apt-get install -y --no-install-recommends docker.io
else
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y --no-install-recommends docker.io
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi
# Node.js and npm for the sigstore-js check of kiln's signatures. A Node.js from elsewhere
# (NodeSource) brings its own npm and conflicts with Debian's npm package, so only when missing.
if ! command -v npm >/dev/null; then
  apt-get install -y --no-install-recommends nodejs npm
fi
# The arm64 busybox and QEMU for the multi-platform tests. Some CI machines cannot mount
# binfmt_misc; the tests that need QEMU skip there.
"$(dirname "$0")/setup-foreign-arch.sh" ||
  echo "install-deps.sh: WARNING: setup-foreign-arch.sh failed; multi-platform tests will skip or fail" >&2
