#!/usr/bin/env bash
# The scale-out measurements' server side (results/scale-out.md): a throwaway PostgreSQL cluster
# and N `dps-server run` replicas on one database, sharing the device port 127.0.0.1:25684
# (SO_REUSEPORT), admin APIs on 127.0.0.1:25685, 25686, ... Everything lives under $WORK.
#   results/scale-out/replicas.sh pg            # initdb + start PostgreSQL 15 on $PG_PORT
#   results/scale-out/replicas.sh start 3       # init the DPS (once) and start 3 replicas
#   results/scale-out/replicas.sh kill 2        # kill -9 replica 2
#   results/scale-out/replicas.sh stop          # stop the replicas and PostgreSQL
#   results/scale-out/replicas.sh psql 'SQL'    # SQL on the DPS database
set -euo pipefail
WORK=${WORK:-/tmp/scale-out}
PG_PORT=${PG_PORT:-25432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB=${DB:-dps_scale}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DEVICE_PORT=${DEVICE_PORT:-25684}
ADMIN_BASE=${ADMIN_BASE:-25685}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-19000}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_() { as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -AXqt "$@"; }

pg() {
  mkdir -p "$WORK"
  rm -rf "$WORK/pg" && mkdir -p "$WORK/pg"
  [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
  as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -w -l "$WORK/pg/log" -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/pg -c max_connections=300 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB" start >/dev/null
  psql_ -d postgres -c "CREATE DATABASE $DB"
  echo "postgres://postgres@127.0.0.1:$PG_PORT/$DB"
}

init_dps() {
  [ -f "$WORK/dps/config.toml" ] && return
  "$BIN/dps-server" init "$WORK/dps" >/dev/null
  python3 - "$WORK/dps/config.toml" "postgres://postgres@127.0.0.1:$PG_PORT/$DB" "$MAX_CONNECTIONS" <<'PY'
import re, sys
path, url, maxc = sys.argv[1:]
s = open(path).read()
s = s.replace('path = "dps.redb"', f'url = "{url}"')
s = re.sub(r'max_connections = \d+', f'max_connections = {maxc}', s)
s = re.sub(r'inactivity_timeout_ms = \d+', 'inactivity_timeout_ms = 60000', s)
s = re.sub(r'max_silent_connections = \d+', 'max_silent_connections = 20000', s)
open(path, 'w').write(s)
PY
}

start() {
  local n=${1:-3}
  init_dps
  for i in $(seq 1 "$n"); do
    local admin=$((ADMIN_BASE + i - 1))
    RUST_LOG=warn setsid "$BIN/dps-server" run --config "$WORK/dps/config.toml" \
      --listen "127.0.0.1:$DEVICE_PORT" --admin-listen "127.0.0.1:$admin" \
      >"$WORK/replica-$i.log" 2>&1 </dev/null &
    echo $! >"$WORK/replica-$i.pid"
  done
  for i in $(seq 1 "$n"); do
    local admin=$((ADMIN_BASE + i - 1))
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break
      sleep 0.1
    done
    echo "replica $i: pid $(cat "$WORK/replica-$i.pid"), admin http://127.0.0.1:$admin"
  done
}

kill_one() { kill -9 "$(cat "$WORK/replica-$1.pid")"; echo "killed replica $1 at $(date +%s.%N)"; }

stop() {
  for f in "$WORK"/replica-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  pg) pg ;;
  start) start "${2:-3}" ;;
  kill) kill_one "$2" ;;
  stop) stop ;;
  psql) psql_ -d "$DB" -c "$2" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
