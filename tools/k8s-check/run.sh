#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests and the Dockerfile (k8s_check.py: render, schema,
# consistency, checkov), then the tests that show each check fails on a broken fixture.
# Installs what it needs on a fresh machine first: kubectl from the machine's Debian packages,
# the tools pinned in requirements.txt into a venv under target/ (reused while they are unchanged).
set -euo pipefail
cd "$(dirname "$0")/../.."

# This kind of machine ships kubectl (with kustomize v5) as a Debian package; where it is missing,
# Debian's own kubernetes-client is the fallback.
if ! command -v kubectl >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq kubectl || apt-get install -y -qq kubernetes-client
fi

venv=target/k8s-check-venv
if ! cmp -s tools/k8s-check/requirements.txt "$venv/installed-requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/k8s-check/requirements.txt
  cp tools/k8s-check/requirements.txt "$venv/installed-requirements.txt"
fi

kubectl version --client
"$venv/bin/python" tools/k8s-check/k8s_check.py
"$venv/bin/python" -m unittest discover --start-directory tools/k8s-check/tests
