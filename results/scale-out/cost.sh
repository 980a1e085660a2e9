#!/usr/bin/env bash
# The PostgreSQL store's cost per provisioning against redb: `dps-loadgen ab` of cost-redb.toml
# (A) and cost-pg.toml (B), interleaved blocks; the server's CPU per provisioned device of each
# side is in its ratio table. PostgreSQL's own processes are outside the spawned server, so
# their CPU (utime + stime of every postgres process, from /proc) is read before and after and
# divided by B's provisioned devices. Run it under `flock /tmp/measure.lock`. Output in $OUT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
WORK=${WORK:-/tmp/scale-out}
OUT=${OUT:-$WORK/cost-run}
PAIRS=${PAIRS:-5}
export DPSBENCH_CACHE=${DPSBENCH_CACHE:-$WORK/cache}
rm -rf "$OUT" && mkdir -p "$OUT"
pg_ticks() {
  # Every postgres process's utime + stime (fields 14, 15 of /proc/<pid>/stat), and the
  # postmaster's cutime + cstime (16, 17): the backends of a spawned server exit with it, and
  # their CPU is then counted in the postmaster that reaped them.
  local sum=0 master t
  master=$(head -n 1 "$WORK/pg/postmaster.pid")
  for pid in $(pgrep -u postgres); do
    if [ "$pid" = "$master" ]; then
      t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}') || t=0
    else
      t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    fi
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
vmstat 5 >"$OUT/vmstat.txt" &
VM=$!
before=$(pg_ticks)
"$BIN/dps-loadgen" ab "$HERE/cost-redb.toml" "$HERE/cost-pg.toml" --pairs "$PAIRS" --results "$OUT" >"$OUT/ab.out" 2>&1
after=$(pg_ticks)
kill "$VM" 2>/dev/null || true
hz=$(getconf CLK_TCK)
provisioned=$(python3 - "$OUT" <<'PY'
import glob, json, sys
n = 0
for f in glob.glob(sys.argv[1] + "/*/runs/*/summary.json"):
    s = json.load(open(f))
    if s["scenario"] == "cost-pg":
        n += s["provisioned"]
print(n)
PY
)
echo "postgres CPU: $(( after - before )) ticks at $hz/s over $provisioned provisioned (B)" | tee "$OUT/postgres-cpu.txt"
python3 -c "print('postgres ms per provisioning: %.3f' % (($after - $before) * 1000 / $hz / max(1, $provisioned)))" | tee -a "$OUT/postgres-cpu.txt"
tail -n 30 "$OUT/ab.out"
