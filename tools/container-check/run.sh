#!/usr/bin/env bash
# The stack in containers, as the manifests run it, checked end to end (tools/test.sh runs this
# after the cargo tests). On a fresh machine it installs Debian's docker.io and debootstrap, starts
# dockerd, makes the base images from Debian's packages (no registry can be reached), builds the
# three runtime images from the workspace's release binaries (build.sh), then runs
# container_check.py: Redis and the three services on a Docker network of its own, read-only
# root, UID 10001, no capabilities, no new privileges, the manifests' environment and volumes,
# ports published on 127.0.0.1 only; upload a photo, see it in the dashboard, restart the
# dashboard, lose nothing; print each image's size. It removes the containers, volumes and
# network it made, and stops dockerd if it started it (CONTAINER_CHECK_KEEP_ENGINE=1 keeps it).
#
# Needs: target/release/{image-upload,image-predict,dashboard}
#   (cargo build --release --locked --bins -p image-upload -p image-predict -p dashboard),
# the labelled photos (../shared/evalset/dev or $CROWD_EVALSET_DIR), kubectl and the k8s-check
# venv (tools/k8s-check/run.sh makes it; this script runs that first when it is missing).
# Usage: tools/container-check/run.sh [--keep]   (--keep leaves the containers running)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$cc_repo"

start="$(cc_now)"
venv=target/k8s-check-venv
[ -x "$venv/bin/python" ] || tools/k8s-check/run.sh

cc_engine
trap cc_engine_stop EXIT
cc_debian_base
cc_redis_image
tools/container-check/build.sh
"$venv/bin/python" tools/container-check/container_check.py \
  --redis-image "$cc_redis_image" --debian-image "$cc_debian_image" "$@"
cc_log "run.sh done in $(cc_since "$start")"
