#!/usr/bin/env bash
# kill -9 of one replica during a run: kill9.toml (300 new devices/s for 30 s, retries on)
# against 3 replicas sharing the port; replica 2 is killed 10 s in. Then PostgreSQL is asked
# whether every provisioned device's identity is there and no device id is held twice.
# Run it under `flock /tmp/measure.lock`. Output in $OUT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
WORK=${WORK:-/tmp/scale-out}
OUT=${OUT:-$WORK/kill9-run}
export DPSBENCH_CACHE=${DPSBENCH_CACHE:-$WORK/cache}
rm -rf "$OUT" && mkdir -p "$OUT"
vmstat 5 >"$OUT/vmstat.txt" &
VM=$!
"$BIN/dps-loadgen" run "$HERE/kill9.toml" --quiet --results "$OUT" >"$OUT/run.out" 2>&1 &
RUN=$!
sleep 12   # the fleet is cached: ~2 s of set-up, then 10 s of devices
"$HERE/replicas.sh" kill 2 | tee "$OUT/killed.txt"
wait "$RUN" || echo "exit $?" >>"$OUT/run.out"
kill "$VM" 2>/dev/null || true
tail -n 8 "$OUT/run.out"
