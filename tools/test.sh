#!/usr/bin/env bash
# Runs every test of the project. Installs first what the tests need from Debian when it is
# missing (redis-server for the shared-store tests, chromium + chromium-driver for the browser test).
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

# The Kubernetes manifests and the Dockerfile, checked offline (a minute; see tools/k8s-check/).
tools/k8s-check/run.sh

cargo test --workspace --locked "$@"
