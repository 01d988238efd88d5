#!/usr/bin/env bash
# Runs bench/onnxruntime_bench.py (arguments passed through) in a venv under target/ holding the
# versions pinned in bench/requirements.txt; the venv is reused while that file is unchanged.
# It runs from the repo root, so relative --model/--input paths are taken from there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/bench-venv
if ! cmp -s bench/requirements.txt "$venv/installed-requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
  cp bench/requirements.txt "$venv/installed-requirements.txt"
fi

exec "$venv/bin/python" bench/onnxruntime_bench.py "$@"
