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

# The browser test (crowd/tests/browser.rs) drives Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "tools/test.sh: installing chromium and chromium-driver for the browser test" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium chromium-driver
fi

cargo test --workspace --locked "$@"
