#!/usr/bin/env bash
# Runs every test of the project. Installs first what the tests need from Debian when it is
# missing (redis-server for the shared-store tests, chromium + chromium-driver for the browser test;
# docker.io and debootstrap for the container check, which installs them itself).
# Usage: tools/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

evalset="${CROWD_EVALSET_DIR:-../shared/evalset/dev}"
if [ ! -f "$evalset/truth.csv" ]; then
  echo "tools/test.sh: the labelled photos are missing: expected $evalset/truth.csv" >&2
  echo "  (the shared/ folder beside the project, or set CROWD_EVALSET_DIR)" >&2
  exit 1
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "tools/test.sh: installing ${missing[*]} (Debian packages the tests start)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Each step's wall-clock time, printed when it ends.
timed() {
  local from=$SECONDS
  "$@"
  echo "tools/test.sh: '$*' took $((SECONDS - from)) s" >&2
}

# The Kubernetes manifests and the Dockerfile, checked offline (a minute; see tools/k8s-check/).
timed tools/k8s-check/run.sh

timed cargo test --workspace --locked "$@"

# The stack in containers (tools/container-check/): the three runtime images built from these
# release binaries, run as the manifests run them, checked end to end. Installs and starts
# Docker (Debian's docker.io) when missing; base images are made from Debian's packages.
timed cargo build --release --locked --bins -p image-upload -p image-predict -p dashboard
timed tools/container-check/run.sh
