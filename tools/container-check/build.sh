#!/usr/bin/env bash
# Builds the three runtime images with the repository's Dockerfile, tagged as k8s/base names them
# (localhost/crowd/<service>:<version>), after making the base images it needs on this machine
# (lib.sh: no registry is reachable). Installs and starts the Docker engine when missing.
#
#   tools/container-check/build.sh          from the workspace's release binaries (BINARIES=prebuilt):
#                                           cargo build --release --locked --bins \
#                                             -p image-upload -p image-predict -p dashboard
#   tools/container-check/build.sh --full   the Dockerfile's full build: compiles the workspace in its
#                                           Rust stage (long; makes rust:1.95.0-slim-bookworm first)
#
# Prints each image's build time and size.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$cc_repo"

full=""
case "${1:-}" in
  --full) full=1 ;;
  "") ;;
  *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac

services=(image-upload image-predict dashboard)
# The tag of each image: the one the base manifests name.
image_of() { sed -n "s#^ *image: \(localhost/crowd/$1:[^ ]*\)\$#\1#p" "k8s/base/$1.yaml"; }

cc_engine
trap cc_engine_stop EXIT
cc_debian_base

if [ -n "$full" ]; then
  cc_rust_base
  context=.
  build_args=()
else
  # The prebuilt context: the binaries where the Dockerfile's binaries-prebuilt stage looks, and
  # the models (hard links when possible: no copy of 40 MB each time).
  context="$cc_work/context"
  rm -rf "$context"
  mkdir -p "$context/target/release"
  for s in "${services[@]}"; do
    if [ ! -x "target/release/$s" ]; then
      cc_log "target/release/$s is missing: cargo build --release --locked --bins -p image-upload -p image-predict -p dashboard"
      exit 1
    fi
    cp -l "target/release/$s" "$context/target/release/" 2>/dev/null || cp "target/release/$s" "$context/target/release/"
  done
  cp -rl models "$context/models" 2>/dev/null || cp -r models "$context/models"
  build_args=(--build-arg BINARIES=prebuilt)
fi

for s in "${services[@]}"; do
  tag="$(image_of "$s")"
  [ -n "$tag" ] || { cc_log "no localhost/crowd/$s image in k8s/base/$s.yaml"; exit 1; }
  start="$(cc_now)"
  "$DOCKER" build "${build_args[@]}" --target "$s" -t "$tag" -f Dockerfile "$context" \
    >"$cc_work/build-$s.log" 2>&1 || { tail -30 "$cc_work/build-$s.log" >&2; exit 1; }
  took="$(cc_since "$start")"
  size="$("$DOCKER" image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
  printf 'container-check: built %s in %s (%s)\n' "$tag" "$took" "$size"
done
