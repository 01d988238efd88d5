#!/usr/bin/env bash
# CPU time per photo of the release stack, for choosing image-predict's autoscaling target
# (docs/deploy.md, "Autoscaling"). Starts `crowd up` (the three services in one process; image-predict
# does nearly all the work) on loopback ports of its own, sends each labelled dev photo once, one at a
# time, and reads the process's user+system CPU time (/proc/PID/stat) before and after each photo.
# Prints, per photo: wall time, CPU seconds, and CPU seconds per wall second (cores kept busy).
# Usage: tools/container-check/cpu-per-photo.sh [path/to/crowd]   (default target/release/crowd)
# Takes well under a minute on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

crowd="${1:-target/release/crowd}"
evalset="${CROWD_EVALSET_DIR:-../shared/evalset/dev}"
[ -x "$crowd" ] || { echo "cpu-per-photo: $crowd is missing (cargo build --release -p crowd)" >&2; exit 1; }

tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

up=18903 predict=18902 dash=18940
extra=()
# The stack with camera keys (this round's binaries) would refuse an unauthenticated upload.
if "$crowd" up --help 2>/dev/null | grep -q -- '--no-auth'; then extra+=(--no-auth); fi
(cd "$tmp" && exec "$OLDPWD/$crowd" up \
  --upload-addr "127.0.0.1:$up" --predict-addr "127.0.0.1:$predict" \
  --dashboard-addr "127.0.0.1:$dash" --store embedded --data-dir "$tmp/data" \
  --detector-model "$OLDPWD/models/centernet/centernet.onnx" \
  --density-model "$OLDPWD/models/csrnet/csrnet.onnx" \
  "${extra[@]}" >"$tmp/log" 2>&1) &
pid=$!
# The exec above makes $pid the crowd process itself.
for _ in $(seq 120); do
  curl -fsS -o /dev/null "http://127.0.0.1:$up/healthz" 2>/dev/null \
    && curl -fsS -o /dev/null "http://127.0.0.1:$predict/healthz" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.5
done
sleep 2 # models loaded and optimised; let the start-up work settle

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz="$(getconf CLK_TCK)"
printf '%-20s %8s %8s %8s %s\n' photo wall_s cpu_s cores method
while IFS=, read -r file _rest; do
  [ "$file" = file ] && continue
  before="$(ticks)"
  start="$(date +%s.%N)"
  method="$(curl -fsS --data-binary "@$evalset/$file" -H 'Content-Type: image/jpeg' \
    "http://127.0.0.1:$up/api/v1/cameras/cpu-check/photos" | sed -n 's/.*"method":"\([a-z]*\)".*/\1/p')"
  end="$(date +%s.%N)"
  after="$(ticks)"
  awk -v f="$file" -v s="$start" -v e="$end" -v b="$before" -v a="$after" -v hz="$hz" -v m="$method" \
    'BEGIN { w = e - s; c = (a - b) / hz; printf "%-20s %8.3f %8.2f %8.2f %s\n", f, w, c, c / w, m }'
done <"$evalset/truth.csv" | tee "$tmp/rows"
# Per counting method: mean wall time, mean CPU seconds and cores kept busy (CPU over wall).
awk '{ n[$5]++; w[$5] += $2; c[$5] += $3 }
     END { for (m in n) printf "%s: %d photos, mean %.3f s wall, %.2f CPU-s, %.2f cores\n", m, n[m], w[m] / n[m], c[m] / n[m], c[m] / w[m] }' \
  "$tmp/rows"
