#!/usr/bin/env bash
# Runs every test of the project. Checks first that what the tests need is there.
# Usage: tools/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

evalset="${CROWD_EVALSET_DIR:-../shared/evalset/dev}"
if [ ! -f "$evalset/truth.csv" ]; then
  echo "tools/test.sh: the labelled photos are missing: expected $evalset/truth.csv" >&2
  echo "  (the shared/ folder beside the project, or set CROWD_EVALSET_DIR)" >&2
  exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "tools/test.sh: redis-server is missing; the shared-store tests start their own" >&2
  echo "  (Debian: apt-get install redis-server; .ci/run installs it)" >&2
  exit 1
fi

cargo test --workspace --locked "$@"
