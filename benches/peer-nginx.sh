#!/usr/bin/env bash
# Peer comparison: our dps-server against nginx (the Debian package) on the same TLS 1.3 mTLS
# handshakes, measured with two clients so that the ratio does not rest on our own client:
#
#   1. the load generator's TLS-only executor (closed loop, every device of one cached fleet),
#   2. OpenSSL's s_time (new connections back to back, a few processes in parallel),
#
# each interleaved A/B/A/B (nginx, ours, nginx, ours, ...), against both servers started here on
# loopback with the same server key and certificate, the same client trust anchors (every
# certificate the fleet's enrollment groups configure), TLS 1.3 only, X25519 only, no session
# tickets or cache on either side. Before measuring it checks that both servers really verify the
# client chain (a device of an unknown CA is refused by both; the deepest valid chain is accepted
# by both) and that s_time's handshakes carry the client certificate. Writes results/peer-nginx.md.
#
# Usage: benches/peer-nginx.sh        (about 3-4 minutes on 2 cores once the binaries are built)
# Knobs (environment): ROUNDS=3 DEVICES=15000 CONCURRENCIES="8 32 128" S_TIME_SECONDS=8
#   S_TIME_CLIENTS=2 NGINX_PORT=18443 OURS_PORT=18444 OURS_ADMIN_PORT=18445
#   OUT=results/peer-nginx.md KEEP_WORK=1 (keep the temporary directory) PROFILE=0 (no perf)
# Exit codes: 0 written, 1 a check or a run failed, 2 something missing or a port taken.
# Installs nothing: prints what is missing and exits 2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
DEVICES="${DEVICES:-15000}"
CONCURRENCIES="${CONCURRENCIES:-8 32 128}"
S_TIME_SECONDS="${S_TIME_SECONDS:-8}"
S_TIME_CLIENTS="${S_TIME_CLIENTS:-2}"
NGINX_PORT="${NGINX_PORT:-18443}"
OURS_PORT="${OURS_PORT:-18444}"
OURS_ADMIN_PORT="${OURS_ADMIN_PORT:-18445}"
OUT="${OUT:-$ROOT/results/peer-nginx.md}"
FLEET_SEED=2718

say() { printf 'peer-nginx: %s\n' "$*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

# --- prerequisites -------------------------------------------------------------------------------
NGINX="$(command -v nginx || true)"
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
missing=()
[[ -n $NGINX ]] || missing+=("nginx (Debian: apt-get install nginx)")
for tool in openssl cargo rustc jq curl awk ss pgrep timeout; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    say "missing: ${missing[*]}"
    say "install them first (this script installs nothing)"
    exit 2
fi
for port in "$NGINX_PORT" "$OURS_PORT" "$OURS_ADMIN_PORT"; do
    if [[ -n "$(ss -Hltn "( sport = :$port )")" ]]; then
        say "port $port is taken; set NGINX_PORT / OURS_PORT / OURS_ADMIN_PORT"
        exit 2
    fi
done

# --- build ---------------------------------------------------------------------------------------
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
say "building release binaries (dps-server, dps-loadgen)"
cargo build --release --quiet -p dps-server -p dps-loadgen
BIN="$CARGO_TARGET_DIR/release"

# --- temporary directory, servers cleaned up on exit ---------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/peer-nginx.XXXXXX")"
FLEET="$WORK/fleet"
NGINX_PID=""
OURS_PID=""
cleanup() {
    local rc=$?
    if [[ -n $NGINX_PID ]]; then
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n $OURS_PID ]]; then
        kill -TERM "$OURS_PID" 2>/dev/null || true
        wait "$OURS_PID" 2>/dev/null || true
    fi
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR

# --- the fleet and its scenarios -----------------------------------------------------------------
# One scenario per server and concurrency; everything else (fleet, TLS pins) identical.
scenario() { # name port concurrency -> path
    local file="$WORK/$1-c$3.toml"
    cat >"$file" <<EOF
name = "peer-$1-c$3"
description = "TLS 1.3 mTLS handshakes only against $1 (benches/peer-nginx.sh)"

[target]
address = "127.0.0.1:$2"
server_ca = "$FLEET/server-ca.pem"
tls_only = true

[fleet]
seed = $FLEET_SEED
devices = $DEVICES
key = "p256"
mix = { valid = 1 }

[executor]
kind = "closed-loop"
concurrency = $3

[device]
handshake_only = true
tls_version = "1.3"
key_exchange = "x25519"
timeout = "10s"
EOF
    echo "$file"
}
say "exporting the fleet ($DEVICES valid devices, seed $FLEET_SEED; generated once, then cached)"
"$BIN/dps-loadgen" export-fleet "$(scenario export "$NGINX_PORT" 1)" --out "$FLEET" >"$WORK/export.json"
VERIFY_DEPTH="$(jq -r .verify_depth "$FLEET/peer.json")"
DEVICE_CN="$(jq -r .device "$FLEET/peer.json")"
DEEP_CN="$(jq -r .deep_device "$FLEET/peer.json")"
# s_client takes the leaf (-cert) and the intermediates it sends (-cert_chain) apart.
awk '/BEGIN CERTIFICATE/{n++} n==1' "$FLEET/device-deep.pem" >"$FLEET/deep-leaf.pem"
awk '/BEGIN CERTIFICATE/{n++} n>1' "$FLEET/device-deep.pem" >"$FLEET/deep-intermediates.pem"

# --- our server ----------------------------------------------------------------------------------
(cd "$FLEET" && exec "$BIN/dps-server" run --config config.toml \
    --listen "127.0.0.1:$OURS_PORT" --admin-listen "127.0.0.1:$OURS_ADMIN_PORT") \
    >"$WORK/ours.log" 2>&1 &
OURS_PID=$!

# --- nginx ---------------------------------------------------------------------------------------
# worker_processes = the core count, as our server's tokio runtime has one worker thread per core.
NGINX_WORKERS="$(nproc)"
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log error;
events { worker_connections 8192; }
http {
    access_log off;
    # Only the checks' requests are logged (below): the load generator's connections make none,
    # s_time's measured ones ask for /measure, which is not logged.
    log_format peer_check '\$status \$ssl_protocol \$ssl_curve \$ssl_cipher \$ssl_client_verify "\$ssl_client_s_dn"';
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl backlog=4096;
        access_log $WORK/nginx/check.log peer_check;
        ssl_certificate $FLEET/server.pem;
        ssl_certificate_key $FLEET/server.key;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        # The suite order of our device port (TLS 1.3's mandatory suite first), chosen by the
        # server on both sides.
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384;
        ssl_prefer_server_ciphers on;
        ssl_verify_client on;
        ssl_verify_depth $VERIFY_DEPTH;
        ssl_client_certificate $FLEET/client-ca.pem;
        ssl_session_cache off;
        ssl_session_tickets off;
        # Without this OpenSSL still sends two (stateful, useless) TLS 1.3 tickets per handshake.
        ssl_conf_command NumTickets 0;
        location / { return 200 "ok\n"; }
        # What the measured s_time connections ask for: not logged.
        location /measure { access_log off; return 200 "ok\n"; }
    }
}
EOF
"$NGINX" -t -q -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" ||
    die "nginx refused its configuration ($WORK/nginx/nginx.conf)"
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" \
    >"$WORK/nginx/stdout.log" 2>&1 &
NGINX_PID=$!

for _ in $(seq 100); do
    ours_up=$(curl -sf "http://127.0.0.1:$OURS_ADMIN_PORT/healthz" >/dev/null && echo 1 || true)
    nginx_up=$([[ -n "$(ss -Hltn "( sport = :$NGINX_PORT )")" ]] && echo 1 || true)
    [[ -n $ours_up && -n $nginx_up ]] && break
    kill -0 "$OURS_PID" 2>/dev/null || die "dps-server exited: $(tail -3 "$WORK/ours.log")"
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$WORK/nginx/error.log")"
    sleep 0.1
done
[[ -n ${ours_up:-} && -n ${nginx_up:-} ]] || die "the servers did not come up"
NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
say "dps-server pid $OURS_PID on :$OURS_PORT, nginx pids $NGINX_PIDS on :$NGINX_PORT"

# --- helpers -------------------------------------------------------------------------------------
# OpenSSL's clients pinned like the load generator's devices: TLS 1.3, X25519 only.
cat >"$WORK/openssl-client.cnf" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = peer_client
[peer_client]
MinProtocol = TLSv1.3
Groups = X25519
EOF
export OPENSSL_CONF="$WORK/openssl-client.cnf"

port_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PORT"; else echo "$OURS_PORT"; fi; }
pids_of() { if [[ $1 == nginx ]]; then echo "$NGINX_PIDS"; else echo "$OURS_PID"; fi; }

# User and system CPU time (clock ticks) of these processes, all threads.
cpu_ticks() {
    local user=0 sys=0 pid f
    for pid in "$@"; do
        read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat")
        user=$((user + f[11]))
        sys=$((sys + f[12]))
    done
    echo "$user $sys"
}
TICK="$(getconf CLK_TCK)"

# Our server's own handshake counters.
ours_count() { # accepted | rejected
    curl -sf "http://127.0.0.1:$OURS_ADMIN_PORT/metrics" |
        awk -v o="$1" '$1 == "dps_handshakes_total{outcome=\"" o "\"}" { print $2 }'
}

# One s_client connection: $1 port, $2 an HTTP request to send (or nothing: our server speaks
# CoAP, and sends its CSM or an alert on its own), the rest s_client options. With a request,
# s_client waits for the server to close (nginx does after answering HTTP/1.0); without, it
# leaves one second after connecting, enough to read the verdict.
s_client() {
    local port=$1 send=$2
    shift 2
    local wait_for_server=()
    [[ -n $send ]] && wait_for_server=(-ign_eof)
    { printf '%b' "$send"; sleep 1; } |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$FLEET/server-ca.pem" \
            "${wait_for_server[@]}" "$@" 2>&1 | tr -d '\000' || true
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- checks --------------------------------------------------------------------------------------
say "checks: both servers verify the client chain, s_time sends its certificate"
STARTED=$(date +%s)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
CHECKS="$WORK/checks.md"
HTTP_GET='GET / HTTP/1.0\r\n\r\n'
check_line() { echo "| $1 | $2 | $3 |" >>"$CHECKS"; }
nginx_last() { tail -n 1 "$WORK/nginx/check.log"; }

# nginx refuses a failed client verification with HTTP 400 after the handshake (its verify
# callback accepts every chain and the result is judged per request), so its verdict is read
# from the response and from the check log, which records $ssl_client_verify.
out=$(s_client "$NGINX_PORT" "$HTTP_GET" -cert "$FLEET/device.pem" -key "$FLEET/device.key")
grep -q '^HTTP/1.1 200' <<<"$out" && [[ $(nginx_last) == "200 TLSv1.3 X25519 "*" SUCCESS "* ]] ||
    die "nginx did not accept $DEVICE_CN: $(nginx_last)"
NGINX_TLS="$(grep -aE '^(New, |Server Temp Key|Peer signature type)' <<<"$out" | tr '\n' ';' | sed 's/;$//')"
NGINX_LOG_DEVICE="$(nginx_last)"
out=$(s_client "$NGINX_PORT" "$HTTP_GET" -cert "$FLEET/deep-leaf.pem" -cert_chain "$FLEET/deep-intermediates.pem" -key "$FLEET/device-deep.key")
grep -q '^HTTP/1.1 200' <<<"$out" && [[ $(nginx_last) == "200 "*" SUCCESS "* ]] ||
    die "nginx did not accept the deepest chain ($DEEP_CN): $(nginx_last)"
NGINX_LOG_DEEP="$(nginx_last)"
out=$(s_client "$NGINX_PORT" "$HTTP_GET" -cert "$FLEET/stranger.pem" -key "$FLEET/stranger.key")
grep -q '^HTTP/1.1 400' <<<"$out" && [[ $(nginx_last) == "400 "*" FAILED:"* ]] ||
    die "nginx did not refuse the stranger: $(nginx_last)"
NGINX_LOG_STRANGER="$(nginx_last)"

a0=$(ours_count accepted)
r0=$(ours_count rejected)
out=$(s_client "$OURS_PORT" "" -cert "$FLEET/device.pem" -key "$FLEET/device.key")
OURS_TLS="$(grep -aE '^(New, |Server Temp Key|Peer signature type)' <<<"$out" | tr '\n' ';' | sed 's/;$//')"
grep -q alert <<<"$out" && die "dps-server refused $DEVICE_CN: $out"
s_client "$OURS_PORT" "" -cert "$FLEET/deep-leaf.pem" -cert_chain "$FLEET/deep-intermediates.pem" -key "$FLEET/device-deep.key" >/dev/null
out=$(s_client "$OURS_PORT" "" -cert "$FLEET/stranger.pem" -key "$FLEET/stranger.key")
OURS_STRANGER_ALERT="$(grep -aoE 'alert [a-z ]+' <<<"$out" | head -n 1 || true)"
[[ -n $OURS_STRANGER_ALERT ]] || die "dps-server did not refuse the stranger: $out"
sleep 0.3
a1=$(ours_count accepted)
r1=$(ours_count rejected)
((a1 - a0 == 2 && r1 - r0 == 1)) ||
    die "dps-server counted $((a1 - a0)) accepted / $((r1 - r0)) rejected, expected 2 / 1"

# s_time: with -www it sends a request after each handshake, so nginx logs each connection's
# verification result; our server counts them.
s_time_check() { # port cert key -> connections
    openssl s_time -connect "127.0.0.1:$1" -new -tls1_3 -cert "$2" -key "$3" -www / -time 1 2>&1 |
        awk '/connections in .* real seconds/ { print $1 }'
}
before=$(wc -l <"$WORK/nginx/check.log")
n_ok=$(s_time_check "$NGINX_PORT" "$FLEET/device.pem" "$FLEET/device.key")
mid=$(wc -l <"$WORK/nginx/check.log")
n_bad=$(s_time_check "$NGINX_PORT" "$FLEET/stranger.pem" "$FLEET/stranger.key")
sleep 0.3
ok_lines=$(sed -n "$((before + 1)),${mid}p" "$WORK/nginx/check.log" | grep -c '^200 TLSv1.3 X25519 .* SUCCESS ' || true)
bad_lines=$(sed -n "$((mid + 1)),\$p" "$WORK/nginx/check.log" | grep -c '^400 .* FAILED:' || true)
((n_ok > 0 && ok_lines == n_ok && n_bad > 0 && bad_lines == n_bad)) ||
    die "nginx / s_time: $ok_lines of $n_ok verified, $bad_lines of $n_bad refused"
a0=$(ours_count accepted)
r0=$(ours_count rejected)
o_ok=$(s_time_check "$OURS_PORT" "$FLEET/device.pem" "$FLEET/device.key")
sleep 0.3
a1=$(ours_count accepted)
o_bad=$(s_time_check "$OURS_PORT" "$FLEET/stranger.pem" "$FLEET/stranger.key")
sleep 0.3
r1=$(ours_count rejected)
((o_ok > 0 && a1 - a0 == o_ok && o_bad > 0 && r1 - r0 == o_bad)) ||
    die "dps-server / s_time: $((a1 - a0)) accepted of $o_ok, $((r1 - r0)) rejected of $o_bad"

{
    echo "| check | nginx | ours |"
    echo "|---|---|---|"
} >"$CHECKS"
check_line "negotiated (s_client, device \`$DEVICE_CN\`)" "$NGINX_TLS" "$OURS_TLS"
check_line "device \`$DEVICE_CN\` (leaf under a group CA)" "accepted: \`$NGINX_LOG_DEVICE\`" "accepted (server's counter)"
check_line "deepest valid chain \`$DEEP_CN\` (leaf + intermediate)" "accepted: \`$NGINX_LOG_DEEP\`" "accepted (server's counter)"
check_line "device of an unknown CA (\`stranger.pem\`)" "refused, HTTP 400: \`$NGINX_LOG_STRANGER\`" "refused in the handshake: $OURS_STRANGER_ALERT"
check_line "s_time -www, fleet device, 1 s" "$ok_lines of $n_ok connections logged 200 SUCCESS" "$o_ok of $o_ok counted accepted"
check_line "s_time -www, unknown CA, 1 s" "$bad_lines of $n_bad connections logged 400 FAILED" "$o_bad of $o_bad counted rejected"

# --- raw crypto on this machine (what a handshake cannot go below) -------------------------------
say "openssl speed (P-256 ECDSA, X25519), 1 s each"
speed=$(openssl speed -seconds 1 ecdsap256 ecdhx25519 2>/dev/null)
SIGN_US=$(awk '/ecdsa \(nistp256\)/ { printf "%.1f", 1e6 / $(NF - 1) }' <<<"$speed")
VERIFY_US=$(awk '/ecdsa \(nistp256\)/ { printf "%.1f", 1e6 / $NF }' <<<"$speed")
X25519_US=$(awk '/ecdh \(X25519\)/ { printf "%.1f", 1e6 / $NF }' <<<"$speed")

# --- the load generator --------------------------------------------------------------------------
LG_ROWS="$WORK/loadgen-rows"
: >"$LG_ROWS"
# One run; writes "hs_per_s p50_ms p99_ms server_cpu_us_per_hs server_user_percent
# client_cpu_us_per_hs handshakes errors mismatches ours_accepted" to $WORK/result.
loadgen_run() { # side concurrency
    local side=$1 c=$2 file summary before after accepted0 accepted="" cu cs
    file="$(scenario "$side" "$(port_of "$side")" "$c")"
    # shellcheck disable=SC2046
    before=$(cpu_ticks $(pids_of "$side"))
    [[ $side == ours ]] && accepted0=$(ours_count accepted)
    TIMEFORMAT='%U %S'
    { time "$BIN/dps-loadgen" run "$file" --results "$WORK/runs" --quiet >"$WORK/last-run.log" 2>&1; } 2>"$WORK/last-time" ||
        die "$side c=$c: the load generator failed: $(tail -n 20 "$WORK/last-run.log")"
    # shellcheck disable=SC2046
    after=$(cpu_ticks $(pids_of "$side"))
    [[ $side == ours ]] && { sleep 0.2; accepted=$(($(ours_count accepted) - accepted0)); }
    summary="$(awk '/^results: / { print $2 }' "$WORK/last-run.log")/summary.json"
    read -r cu cs <"$WORK/last-time"
    jq -r --arg b "$before" --arg a "$after" --arg tick "$TICK" --arg cu "$cu" --arg cs "$cs" --arg acc "${accepted:--}" '
        ($b | split(" ") | map(tonumber)) as $b | ($a | split(" ") | map(tonumber)) as $a
        | (($a[0] - $b[0]) / ($tick | tonumber)) as $u | (($a[1] - $b[1]) / ($tick | tonumber)) as $s
        | [ (.handshakes_per_s * 10 | round / 10),
            (.latency.handshake.p50_us / 100 | round / 10),
            (.latency.handshake.p99_us / 100 | round / 10),
            (if .handshakes > 0 then (($u + $s) * 1e6 / .handshakes | round) else 0 end),
            (if ($u + $s) > 0 then ($u * 100 / ($u + $s) | round) else 0 end),
            (if .handshakes > 0 then ((($cu | tonumber) + ($cs | tonumber)) * 1e6 / .handshakes | round) else 0 end),
            .handshakes, .errors, .mismatches, $acc ] | map(tostring) | join(" ")' "$summary" \
        >"$WORK/result"
}

say "calibration: closed-loop concurrency $CONCURRENCIES on each server"
CAL="$WORK/calibration.md"
{
    echo "| concurrency | nginx handshakes/s | nginx p50 / p99 ms | ours handshakes/s | ours p50 / p99 ms |"
    echo "|---:|---:|---:|---:|---:|"
} >"$CAL"
best_nginx=0 best_ours=0 c_nginx="" c_ours=""
for c in $CONCURRENCIES; do
    loadgen_run nginx "$c"
    read -r n_rate n_p50 n_p99 _ <"$WORK/result"
    loadgen_run ours "$c"
    read -r o_rate o_p50 o_p99 _ <"$WORK/result"
    echo "| $c | $n_rate | $n_p50 / $n_p99 | $o_rate | $o_p50 / $o_p99 |" >>"$CAL"
    say "  c=$c: nginx $n_rate/s, ours $o_rate/s"
    if awk -v a="$n_rate" -v b="$best_nginx" 'BEGIN { exit !(a > b) }'; then best_nginx=$n_rate c_nginx=$c; fi
    if awk -v a="$o_rate" -v b="$best_ours" 'BEGIN { exit !(a > b) }'; then best_ours=$o_rate c_ours=$c; fi
done

say "load generator: $ROUNDS rounds A/B (nginx c=$c_nginx, ours c=$c_ours)"
LG="$WORK/loadgen.md"
{
    echo "| round | server | concurrency | handshakes/s | p50 ms | p99 ms | server CPU µs/handshake | of which user | client CPU µs/handshake | handshakes | errors | mismatches | server counted accepted |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$LG"
for r in $(seq "$ROUNDS"); do
    for side in nginx ours; do
        c=$([[ $side == nginx ]] && echo "$c_nginx" || echo "$c_ours")
        loadgen_run "$side" "$c"
        read -r rate p50 p99 cpu user client hs errors mism acc <"$WORK/result"
        echo "| $r | $side | $c | $rate | $p50 | $p99 | $cpu | $user % | $client | $hs | $errors | $mism | $acc |" >>"$LG"
        echo "$side $rate $cpu $client $p50 $p99" >>"$LG_ROWS"
        say "  round $r $side: $rate handshakes/s, p50 $p50 ms, p99 $p99 ms, server $cpu µs CPU each"
        ((errors == 0 && mism == 0 && hs == DEVICES)) || die "$side round $r: $errors errors, $mism mismatches, $hs handshakes"
        [[ $side == nginx || $acc == "$DEVICES" ]] || die "ours round $r: the server counted $acc accepted of $DEVICES"
    done
done

# --- OpenSSL s_time ------------------------------------------------------------------------------
ST_ROWS="$WORK/s_time-rows"
: >"$ST_ROWS"
ST="$WORK/s_time.md"
{
    echo "| round | server | connections | wall s | connections/s | server CPU µs/connection | client CPU µs/connection | server counted accepted |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
} >"$ST"
say "s_time: $ROUNDS rounds A/B, $S_TIME_CLIENTS processes x ${S_TIME_SECONDS} s"
for r in $(seq "$ROUNDS"); do
    for side in nginx ours; do
        port=$(port_of "$side")
        # shellcheck disable=SC2046
        before=$(cpu_ticks $(pids_of "$side"))
        [[ $side == ours ]] && accepted0=$(ours_count accepted)
        # s_time's -time ends at a whole second of the clock, so the wall time is measured here.
        TIMEFORMAT='%R %U %S'
        {
            time (
                for i in $(seq "$S_TIME_CLIENTS"); do
                    openssl s_time -connect "127.0.0.1:$port" -new -tls1_3 -cert "$FLEET/device.pem" \
                        -key "$FLEET/device.key" -www /measure -time "$S_TIME_SECONDS" \
                        >"$WORK/s_time.$i" 2>&1 &
                done
                wait
            )
        } 2>"$WORK/last-time"
        read -r wall cu cs <"$WORK/last-time"
        # shellcheck disable=SC2046
        after=$(cpu_ticks $(pids_of "$side"))
        acc="-"
        [[ $side == ours ]] && { sleep 0.2; acc=$(($(ours_count accepted) - accepted0)); }
        n=$(cat "$WORK"/s_time.* | awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')
        ((n > 0)) || die "s_time against $side made no connection: $(cat "$WORK/s_time.1")"
        read -r rate cpu client < <(awk -v n="$n" -v w="$wall" -v b="$before" -v a="$after" -v tick="$TICK" -v cu="$cu" -v cs="$cs" 'BEGIN {
            split(b, x, " "); split(a, y, " ")
            printf "%.1f %d %d\n", n / w, ((y[1] - x[1]) + (y[2] - x[2])) / tick * 1e6 / n, (cu + cs) * 1e6 / n }')
        echo "| $r | $side | $n | $wall | $rate | $cpu | $client | $acc |" >>"$ST"
        echo "$side $rate $cpu $client" >>"$ST_ROWS"
        say "  round $r $side: $rate connections/s, server $cpu µs CPU each"
        [[ $side == nginx || $acc == "$n" ]] || die "ours s_time round $r: the server counted $acc accepted of $n"
    done
done

# --- ratios --------------------------------------------------------------------------------------
col() { awk -v s="$1" -v k="$2" '$1 == s { printf "%s ", $k }' "$3" | median; }
LG_NGINX=$(col nginx 2 "$LG_ROWS")
LG_OURS=$(col ours 2 "$LG_ROWS")
LG_RATIO=$(ratio "$LG_OURS" "$LG_NGINX")
CPU_NGINX=$(col nginx 3 "$LG_ROWS")
CPU_OURS=$(col ours 3 "$LG_ROWS")
CPU_RATIO=$(ratio "$CPU_NGINX" "$CPU_OURS")
CLIENT_US=$(awk '{ printf "%s ", $4 }' "$LG_ROWS" | median)
ST_NGINX=$(col nginx 2 "$ST_ROWS")
ST_OURS=$(col ours 2 "$ST_ROWS")
ST_RATIO=$(ratio "$ST_OURS" "$ST_NGINX")
ST_CPU_NGINX=$(col nginx 3 "$ST_ROWS")
ST_CPU_OURS=$(col ours 3 "$ST_ROWS")
ST_CPU_RATIO=$(ratio "$ST_CPU_NGINX" "$ST_CPU_OURS")
ST_CLIENT_US=$(awk '{ printf "%s ", $4 }' "$ST_ROWS" | median)
verdict() { awk -v r="$1" 'BEGIN { if (r == "n/a") print "n/a"; else if (r >= 2) print "met"; else print "missed" }'; }
CORES=$(nproc)
# With the client on the same cores, handshakes/s is at most cores / (server + client CPU per
# handshake): the ceiling each server could reach here if its CPU cost were all that counted.
CEIL_NGINX=$(awk -v c="$CORES" -v s="$CPU_NGINX" -v k="$CLIENT_US" 'BEGIN { printf "%.0f", c * 1e6 / (s + k) }')
CEIL_OURS=$(awk -v c="$CORES" -v s="$CPU_OURS" -v k="$CLIENT_US" 'BEGIN { printf "%.0f", c * 1e6 / (s + k) }')
ST_CEIL_NGINX=$(awk -v c="$CORES" -v s="$ST_CPU_NGINX" -v k="$ST_CLIENT_US" 'BEGIN { printf "%.0f", c * 1e6 / (s + k) }')
ST_CEIL_OURS=$(awk -v c="$CORES" -v s="$ST_CPU_OURS" -v k="$ST_CLIENT_US" 'BEGIN { printf "%.0f", c * 1e6 / (s + k) }')
RAW_NGINX=$(awk -v s="$SIGN_US" -v v="$VERIFY_US" -v x="$X25519_US" 'BEGIN { printf "%.0f", s + 2 * x + 3 * v }')

# --- where the time goes (perf, when it works here) ------------------------------------------------
# One more load-generator run per server, sampled for a few seconds in its middle: the servers'
# CPU by shared object and the top symbols. Debian's libcrypto has no symbols (addresses only).
PROFILE_MD=""
PROFILE_SUMMARY=""
if [[ ${PROFILE:-auto} != 0 ]] && command -v perf >/dev/null &&
    perf record -q -o "$WORK/probe.perf" -- true >/dev/null 2>&1; then
    say "perf: one more run per server, 3 s sampled"
    for side in nginx ours; do
        c=$([[ $side == nginx ]] && echo "$c_nginx" || echo "$c_ours")
        pids=$([[ $side == nginx ]] && pgrep -P "$NGINX_PID" | paste -sd, || echo "$OURS_PID")
        "$BIN/dps-loadgen" run "$(scenario "$side" "$(port_of "$side")" "$c")" --results "$WORK/runs" \
            --quiet >"$WORK/profile-run.log" 2>&1 &
        lg=$!
        sleep 1
        perf record -q -F 999 -g -p "$pids" -o "$WORK/$side.perf" -- sleep 3 >/dev/null 2>&1 || true
        wait "$lg" || die "the profiled run against $side failed: $(tail -n 5 "$WORK/profile-run.log")"
        # (head closes the pipe early: not a failure)
        dso=$(perf report -i "$WORK/$side.perf" --no-children --sort dso --stdio -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | head -n 6 || true)
        sym=$(perf report -i "$WORK/$side.perf" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
            grep -v -e '^#' -e '^$' | head -n 12 || true)
        PROFILE_MD+="
### $side

\`\`\`
$dso

$sym
\`\`\`
"
        share() { awk -v d="$1" '$2 == d { sub("%", "", $1); s += $1 } END { printf "%.0f", s }' <<<"$dso"; }
        if [[ $side == nginx ]]; then
            P_NGINX="nginx's workers: $(share libcrypto.so.3) % in libcrypto, $(share libssl.so.3) % in libssl, $(share libc.so.6) % in libc (allocation, locks), $(share '[kernel.kallsyms]') % in the kernel, $(share nginx) % in nginx itself"
        else
            P_OURS="ours: $(share dps-server) % in its binary (rustls, aws-lc, tokio; see the symbols), $(share libc.so.6) % in libc, $(share '[kernel.kallsyms]') % in the kernel"
        fi
    done
    PROFILE_SUMMARY="Profiles (perf, below): $P_NGINX; $P_OURS. Ours spends its time mostly in aws-lc's P-256 (ecp_nistz256), SHA-256 and X25519 code (its top symbols are listed below); nginx's libcrypto has no symbols here, and its libc share is allocation and pthread read-write locks, which nginx's single-threaded workers only take through OpenSSL."
fi

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
TOOK=$(($(date +%s) - STARTED))

# --- the report ----------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
    cat <<EOF
# Peer comparison: dps-server vs nginx, TLS 1.3 mTLS handshakes

Written by \`benches/peer-nginx.sh\` on $(date -u +%Y-%m-%dT%H:%M:%SZ). Target (performance issue):
ours ≥ 2× nginx handshakes/s on the same chains in the same run.

## Result

| client | nginx (median) | ours (median) | ours / nginx | target ≥ 2× |
|---|---:|---:|---:|---|
| load generator, handshakes/s | $LG_NGINX | $LG_OURS | **$LG_RATIO** | $(verdict "$LG_RATIO") |
| openssl s_time, connections/s | $ST_NGINX | $ST_OURS | **$ST_RATIO** | $(verdict "$ST_RATIO") |
| server CPU per handshake, µs (load generator) | $CPU_NGINX | $CPU_OURS | **$CPU_RATIO** (nginx / ours) | $(verdict "$CPU_RATIO") |
| server CPU per connection, µs (s_time) | $ST_CPU_NGINX | $ST_CPU_OURS | **$ST_CPU_RATIO** (nginx / ours) | $(verdict "$ST_CPU_RATIO") |

Interpretation. The target (≥ 2× handshakes/s in the same run) is **$(verdict "$LG_RATIO") with
the load generator ($LG_RATIO×) and $(verdict "$ST_RATIO") with s_time ($ST_RATIO×)**. Both
servers share the machine's $CORES cores with the client, so a rate measures server and client
together: at most $CORES cores / (server + client CPU per handshake).

- Load generator: its client spent a median $CLIENT_US µs of CPU per handshake; with the servers'
  $CPU_NGINX µs (nginx) and $CPU_OURS µs (ours) the ceilings are about $CEIL_NGINX and $CEIL_OURS
  handshakes/s, a ratio of $(ratio "$CEIL_OURS" "$CEIL_NGINX") (measured: $LG_RATIO).
- s_time: its client spent $ST_CLIENT_US µs per connection (OpenSSL 3.0's client side), more than
  either server; ceilings about $ST_CEIL_NGINX and $ST_CEIL_OURS connections/s, a ratio of
  $(ratio "$ST_CEIL_OURS" "$ST_CEIL_NGINX") (measured: $ST_RATIO).

The client's share pulls the ratio towards 1 whatever the servers do: with these server costs
the ratio in handshakes/s could reach 2× on $CORES shared cores only with a client spending
$(awk -v n="$CPU_NGINX" -v o="$CPU_OURS" 'BEGIN { if (n > 2 * o) printf "under %.0f µs per handshake", n - 2 * o; else print "no CPU at all (and not even then)" }'). The servers' own difference is their CPU
per handshake (user + system time of their processes over the run, divided by the handshakes,
which does not depend on the client): nginx needs $CPU_RATIO× the CPU ours does with the load
generator's handshakes, $ST_CPU_RATIO× with s_time's (which add an HTTP request, answered by
nginx and refused as a CoAP protocol error by ours). The ratio per unit of server CPU is
$(verdict "$CPU_RATIO" | sed 's/met/≥ 2×/; s/missed/< 2×/') with the load generator.

For scale, OpenSSL's primitives on this machine: ECDSA P-256 sign $SIGN_US µs, verify $VERIFY_US µs,
X25519 $X25519_US µs; a handshake with a leaf directly under a group CA costs nginx at least
1 sign + 2 X25519 + 3 verifies (the client's CertificateVerify, the leaf, the group CA under the
root) ≈ $RAW_NGINX µs of the $CPU_NGINX µs measured. Our server verifies one signature fewer (the
configured CA ← root link is verified once, when the group is created) and uses aws-lc-rs.
$PROFILE_SUMMARY

## Machine and versions

- $(nproc) cores: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); $(uname -sr);
  load average $LOAD_BEFORE before the measurements, $LOAD_AFTER after (the machine may be shared
  with other work; the rounds are interleaved so that both servers see the same background);
  checks and measurements took $TOOK s
- $("$NGINX" -v 2>&1), $(openssl version), $(rustc -V), dps-server at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- server loadgen 2>/dev/null || echo " (with local changes)")

## Set-up (same on both sides)

- Fleet: $DEVICES \`valid\` devices (seed $FLEET_SEED, P-256 keys) from \`dps-loadgen export-fleet\`:
  four enrollment groups (factory-a, factory-b, legacy, premium) under one root; one device in
  five sits under an extra intermediate (\`Factory A Line 1 CA\`) and presents it, the others
  present their leaf alone. Our server has the fleet's groups (its \`config.toml\`); nginx has
  every certificate those groups configure as \`ssl_client_certificate\` (the group CAs and the
  root) and \`ssl_verify_depth $VERIFY_DEPTH\` (what the deepest valid chain needs).
- The same server certificate and P-256 key (\`server.pem\` = certificate + its CA).
- TLS 1.3 only, X25519 only (nginx \`ssl_protocols TLSv1.3\`, \`ssl_ecdh_curve X25519\`; our
  server offers rustls's defaults, so the group is pinned by the clients, which offer X25519
  alone; s_client shows the result below). Cipher suite: the server's choice on both, in the
  same order (TLS_AES_128_GCM_SHA256 first: ours by its device-port preference, nginx by
  \`ssl_conf_command Ciphersuites\` + \`ssl_prefer_server_ciphers on\`; in the checks below).
- Every handshake is full: the clients never resume; nginx \`ssl_session_cache off\`,
  \`ssl_session_tickets off\`, \`ssl_conf_command NumTickets 0\` (without it OpenSSL still sends
  two tickets per handshake); our server has no session storage and no ticketer.
- nginx: \`worker_processes $NGINX_WORKERS\` (the core count; our server's tokio runtime has one
  worker thread per core), \`access_log off\` (only the checks' HTTP requests reach a log; the
  load generator sends none, s_time asks for an unlogged location), \`error_log ... error\`. Our server: \`dps-server run\` with the
  exported config, default logging (it logs refusals, not acceptances).
- Known asymmetries: nginx sends the names of its $(jq -r .trust_anchors "$FLEET/peer.json") client CAs in its
  CertificateRequest, ours sends none; nginx only records a failed client verification and
  refuses with HTTP 400 on the first request (it cannot fail the handshake), ours refuses in the
  handshake with an alert — the verification itself happens during the handshake on both.

### Checks before measuring

$(cat "$CHECKS")

## Load generator (closed loop, TLS-only target)

Each device: TCP connect, TLS 1.3 handshake with its chain, close_notify, read until the server
closes; handshake latency runs from the first TLS byte to that end. Every device of the fleet
once per run. Calibration (one run each, best concurrency kept per server):

$(cat "$CAL")

Rounds (nginx c=$c_nginx, ours c=$c_ours), interleaved:

$(cat "$LG")

In a closed loop latency grows with the concurrency (p50 ≈ concurrency / rate), so compare the
two servers' latencies at equal concurrency, in the calibration table.

Scenario (the nginx one; ours differs in name and port$([[ $c_nginx == "$c_ours" ]] || echo ", and concurrency")):

\`\`\`toml
$(sed "s|$WORK|\$WORK|g" "$WORK/nginx-c$c_nginx.toml")
\`\`\`

## openssl s_time

\`openssl s_time -connect 127.0.0.1:PORT -new -tls1_3 -cert device.pem -key device.key -www /measure -time $S_TIME_SECONDS\`,
$S_TIME_CLIENTS processes at once, \`OPENSSL_CONF\` pinning TLS 1.3 and X25519 (\`Groups = X25519\`).
s_time loads only the first certificate of \`-cert\`, so it uses \`$DEVICE_CN\`, a leaf directly
under a group CA. It does not verify the server certificate. \`-www\` makes it send one HTTP/1.0
request after each handshake and read until the server closes: without it s_time resets each
connection (SO_LINGER 0) right after its Finished, and a server that has not yet read the
client's last flight loses it (our server counted about one such handshake in five as failed by
connection reset), which would favour the slower server. nginx answers \`200 ok\` (no log for
\`/measure\`); our server answers the HTTP bytes with its CSM and a CoAP protocol error, and
closes. Both are small next to the handshake; our server's counter shows it accepted every
connection.

$(cat "$ST")

$([[ -n $PROFILE_MD ]] && printf '## Where the time goes (perf, 3 s of one more run each)\n%s\n' "$PROFILE_MD")

## nginx configuration

\`\`\`nginx
$(sed "s|$WORK|\$WORK|g" "$WORK/nginx/nginx.conf")
\`\`\`
EOF
} >"$OUT"
say "written: $OUT"
