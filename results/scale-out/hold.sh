#!/usr/bin/env bash
# 50,000 devices held at once: 3 replicas (replicas.sh), 3 generator segments of
# hold-50k-remote.toml, and once all are held a 4th generator offering new-500.toml (500 new
# devices/s); then the segments merged. Samples every 2 s: the replicas' open connections and
# RSS, vmstat. Run it under `flock /tmp/measure.lock`. Output in $OUT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
WORK=${WORK:-/tmp/scale-out}
OUT=${OUT:-$WORK/hold-run}
export DPSBENCH_CACHE=${DPSBENCH_CACHE:-$WORK/cache}
rm -rf "$OUT" && mkdir -p "$OUT"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
open_at() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "dps_open_connections" {print $2}'; }
sample() {
  while sleep 2; do
    line="$(date +%s)"
    for i in 1 2 3; do
      pid=$(cat "$WORK/replica-$i.pid")
      line="$line replica$i open=$(open_at $((25684 + i))) rss_kib=$(rss "$pid")"
    done
    echo "$line"
  done
}
for i in 1 2 3; do echo "replica $i rss_kib before: $(rss "$(cat "$WORK/replica-$i.pid")")"; done | tee "$OUT/rss-before.txt"
vmstat 5 >"$OUT/vmstat.txt" &
VM=$!
sample >"$OUT/replicas.txt" &
SAMPLER=$!
for i in 1 2 3; do
  /usr/bin/time -v "$BIN/dps-loadgen" run "$HERE/hold-50k-remote.toml" --segment "$i/3" --quiet \
    --results "$OUT/segments" >"$OUT/segment-$i.out" 2>"$OUT/segment-$i.err" &
  eval "SEG$i=$!"
done
# Once the replicas hold (nearly) every device, the 4th generator: new devices at 500/s.
until [ "$(( $(open_at 25685) + $(open_at 25686) + $(open_at 25687) ))" -ge 49900 ]; do
  sleep 1
  kill -0 "$SEG1" 2>/dev/null || break
done
echo "held: $(date +%s) open $(( $(open_at 25685) + $(open_at 25686) + $(open_at 25687) ))" | tee "$OUT/held.txt"
"$BIN/dps-loadgen" run "$HERE/new-500.toml" --quiet --results "$OUT/new" >"$OUT/new.out" 2>"$OUT/new.err" || true
echo "new done: $(date +%s)" | tee -a "$OUT/held.txt"
wait "$SEG1" "$SEG2" "$SEG3" || true
kill "$SAMPLER" "$VM" 2>/dev/null || true
"$BIN/dps-loadgen" merge "$OUT"/segments/hold-50k-remote-segment-* --results "$OUT/merged" >"$OUT/merge.out" 2>&1 || true
tail -n 5 "$OUT"/segment-*.out "$OUT/new.out" "$OUT/merge.out"
