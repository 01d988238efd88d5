#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need on a fresh machine first.
# Usage: tools/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

evalset="${CROWD_EVALSET_DIR:-../shared/evalset/dev}"
if [ ! -f "$evalset/truth.csv" ]; then
  echo "tools/test.sh: the labelled photos are missing: expected $evalset/truth.csv" >&2
  echo "  (the shared/ folder beside the project, or set CROWD_EVALSET_DIR)" >&2
  exit 1
fi

# The Kubernetes manifests and the Dockerfile, checked offline (a minute; see tools/k8s-check/).
tools/k8s-check/run.sh

cargo test --workspace --locked "$@"
