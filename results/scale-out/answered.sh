#!/usr/bin/env bash
# The device ids a run's generator was answered (RESULTS_DIR/identities.csv) checked id by id
# against the replicas' PostgreSQL database (answered.sql), in one psql session.
#   results/scale-out/answered.sh RESULTS_DIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PG_PORT=${PG_PORT:-25432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB=${DB:-dps_scale}
csv="$1/identities.csv"
[ -f "$csv" ] || { echo "no $csv" >&2; exit 2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
{
  echo "CREATE TEMP TABLE answered (device integer, device_id text);"
  echo "COPY answered FROM STDIN WITH (FORMAT csv, HEADER true);"
  cat "$csv"
  echo '\.'
  cat "$HERE/answered.sql"
} | as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -AXqt -v ON_ERROR_STOP=1
