#!/usr/bin/env bash
# Photos per second through the whole HTTP path at saturation: wrk POSTs one JPEG as the raw body
# to image-upload over and over, for a fixed time. Prints one JSON line (see bench/post_photo.lua).
# Usage: bench/http_load.sh URL PHOTO [SECONDS=20] [CONNECTIONS=4]
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 4 ]; then
  echo "usage: $0 URL PHOTO [SECONDS] [CONNECTIONS]" >&2
  exit 2
fi
url=$1 photo=$2 seconds=${3:-20} conns=${4:-4}

# Load tests only ever go to this machine's loopback.
host=$(printf '%s' "$url" | sed -E 's#^[a-zA-Z]+://([^/:]+).*#\1#')
case "$url" in http://*|https://*) ;; *) host="" ;; esac
if [ "$host" != 127.0.0.1 ] && [ "$host" != localhost ]; then
  echo "error: refusing $url: the host must be 127.0.0.1 or localhost" >&2
  exit 2
fi
if [ ! -r "$photo" ]; then
  echo "error: cannot read photo $photo" >&2
  exit 2
fi
case "$seconds$conns" in *[!0-9]*|'') echo "error: SECONDS and CONNECTIONS must be integers" >&2; exit 2 ;; esac
if [ "$seconds" -lt 1 ] || [ "$conns" -lt 1 ]; then echo "error: SECONDS and CONNECTIONS must be >= 1" >&2; exit 2; fi
# Resolved before the cd below, so a path relative to the caller's directory still works.
photo=$(realpath "$photo")
cd "$(dirname "$0")/.."

# wrk comes from Debian's packages where it is missing (its output to stderr: stdout is the JSON).
if ! command -v wrk >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq wrk >&2
fi

# One thread per connection up to the core count: wrk refuses more threads than connections.
threads=$(nproc)
[ "$threads" -le "$conns" ] || threads=$conns

# wrk's own report goes to stderr so stdout holds only the JSON line from done().
out=$(mktemp)
trap 'rm -f "$out"' EXIT
wrk -t "$threads" -c "$conns" -d "${seconds}s" --timeout 30s --latency \
  -s bench/post_photo.lua "$url" -- "$photo" >"$out"
grep -v '^{' "$out" >&2 || true
grep '^{' "$out"
