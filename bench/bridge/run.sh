#!/usr/bin/env bash
# Bridge benchmarks on this machine, through the real path (`kumo up`: private
# PostgreSQL, one broker node, the bridge with MQTT wired to the node):
#
#  1. Ingest: PUB_DEVICES devices (kumo-bench publish, mTLS, own certificates)
#     publish QoS 1 `{"val":…,"ts":…}` on devices/{id}/sensors/te at PUB_RATE/s
#     for PUB_SECS s; the bridge writes them into `readings`. Rows are counted
#     in the database every SAMPLE s (count(*) and the time of its snapshot);
#     the sustained rate is the slope between the samples at WARMUP s and at the
#     end of publishing.
#  2. Command round trip: SIM_DEVICES `kumo sim` devices connected to the node,
#     registered with one LIGHT appliance each (bulk SQL), then kumo-bench
#     commands: POST /1/appliances/{id}/light button=on with `Prefer: wait=5`,
#     open loop at each rate in CMD_RATES for CMD_SECS s, round-robin over the
#     appliances; latency from each request's scheduled start to its response.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench
#   PostgreSQL server binaries (for `kumo up`'s private database) and psql.
#
# Usage: bench/bridge/run.sh            (tunables below, as environment variables)
# Bounded: about PUB_SECS + sum(CMD_SECS) + 3 min; everything started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUMO=${KUMO:-$ROOT/target/release/kumo}
BENCH=${BENCH:-$ROOT/target/release/kumo-bench}
PARTS=${PARTS:-"ingest commands"}  # any subset
PUB_DEVICES=${PUB_DEVICES:-1000}   # publishing devices
PUB_RATE=${PUB_RATE:-50000}        # target publishes/s over all of them (the goal)
PUB_SECS=${PUB_SECS:-60}           # publishing time
PUB_CONC=${PUB_CONC:-64}           # connects in flight while connecting them
WARMUP=${WARMUP:-10}               # s of publishing left out of the sustained rate
SAMPLE=${SAMPLE:-5}                # s between database samples
DRAIN=${DRAIN:-30}                 # s allowed after publishing for the rows to land
SIM_DEVICES=${SIM_DEVICES:-19000}  # devices held by `kumo sim` for the command runs
SIM_RAMP=${SIM_RAMP:-1000}         # their connects/s
CMD_RATES=${CMD_RATES:-"100 500"}  # commands/s, one run each
CMD_SECS=${CMD_SECS:-60}           # length of each command run
CATCHUP_LIMIT=${CATCHUP_LIMIT:-600} # s to wait for the bridge to record the sim devices
MQTT_PORT=${MQTT_PORT:-38893}
NODE_HTTP_PORT=${NODE_HTTP_PORT:-39893}
BRIDGE_PORT=${BRIDGE_PORT:-38080}
BRIDGE_METRICS_PORT=${BRIDGE_METRICS_PORT:-39080}
WORK=${WORK:-$(mktemp -d /tmp/kumo-bench-bridge.XXXXXX)}

ulimit -n 20000
# The private PostgreSQL runs as user postgres when we are root: it must enter $WORK.
chmod o+x "$WORK"
for bin in "$BENCH" "$KUMO"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
done
command -v psql >/dev/null || { echo "missing psql" >&2; exit 1; }

# Everything this script starts is one of its background jobs; only those are
# stopped on exit (`kumo up` stops its PostgreSQL itself on SIGTERM).
cleanup() {
  local pids i
  pids=$(jobs -p)
  [[ -z $pids ]] && return 0
  kill $pids 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 $pids 2>/dev/null || break
    sleep 0.2
  done
  kill -9 $pids 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
cpu_s() { awk '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU seconds of this stack's PostgreSQL processes (postmaster and backends:
# their working directory is the cluster's data directory).
pg_cpu_s() {
  local total=0 p
  for p in $(pgrep -x postgres); do
    [[ $(readlink "/proc/$p/cwd" 2>/dev/null) == "$WORK"/data/* ]] || continue
    total=$(awk -v t="$total" -v c="$(cpu_s "$p")" 'BEGIN { printf "%.2f", t + c }')
  done
  echo "$total"
}

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
export KUMO__BROKER__LISTEN=127.0.0.1:$MQTT_PORT
export KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$NODE_HTTP_PORT
export KUMO__BROKER__MAX_CONNECTIONS=$((SIM_DEVICES + PUB_DEVICES + 500))
export KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT
export KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT
# One token drives every command; the default limit (6,000 per 5 min) would
# stop the runs, so it is lifted for the benchmark.
export KUMO__BRIDGE__RATE_LIMIT__REQUESTS=100000000

if ss -Hltn "( sport = :$MQTT_PORT or sport = :$NODE_HTTP_PORT or sport = :$BRIDGE_PORT or sport = :$BRIDGE_METRICS_PORT )" | grep -q .; then
  echo "port $MQTT_PORT, $NODE_HTTP_PORT, $BRIDGE_PORT or $BRIDGE_METRICS_PORT is in use; set MQTT_PORT / NODE_HTTP_PORT / BRIDGE_PORT / BRIDGE_METRICS_PORT" >&2
  exit 1
fi

log "work directory $WORK; $(nproc) cores; uptime: $(uptime)"
"$KUMO" up >"$WORK/up.out" 2>"$WORK/up.err" &
UP_PID=$!
for i in $(seq 1 900); do
  grep -q 'Kumo is up' "$WORK/up.out" 2>/dev/null && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.err" >&2; exit 1; }
  sleep 0.1
done
grep -q 'Kumo is up' "$WORK/up.out" || { echo "kumo up not ready in 90 s" >&2; exit 1; }
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
log "stack up (pid $UP_PID); database $DB_URL"
PKI=$(awk '$1 == "pki" { print $2; exit }' "$WORK/up.out")

ingest() {
  log "ingest: $PUB_DEVICES devices, $PUB_RATE/s target, $PUB_SECS s"
  "$BENCH" publish --addr "127.0.0.1:$MQTT_PORT" --pki "$PKI" --prefix ing --count "$PUB_DEVICES" \
    --concurrency "$PUB_CONC" --rate "$PUB_RATE" --duration "$PUB_SECS" --drain "$DRAIN" \
    >"$WORK/publish.json" 2>"$WORK/publish.err" &
  local pub=$! up0 pg0
  # Sample the table until publishing has ended and the count stopped moving.
  : >"$WORK/rows.tsv"
  local last=-1 still=0 started=0
  while :; do
    sleep "$SAMPLE"
    if [[ $started -eq 0 ]] && grep -q '^\[' "$WORK/publish.err" 2>/dev/null; then
      started=1
      up0=$(cpu_s "$UP_PID"); pg0=$(pg_cpu_s)
    fi
    local row
    row=$(sql "SELECT extract(epoch FROM now()), count(*) FROM readings")
    echo "$row" | tr '|' '\t' >>"$WORK/rows.tsv"
    local n=${row#*|}
    if ! kill -0 "$pub" 2>/dev/null; then
      [[ $n -eq $last ]] && still=$((still + 1))
      [[ $still -ge 2 ]] && break
    fi
    last=$n
  done
  wait "$pub" || true
  local up1 pg1
  up1=$(cpu_s "$UP_PID"); pg1=$(pg_cpu_s)
  # The node's own loss counters: messages it dropped from the bridge's
  # session backlog, and rumqttd commit-log overruns (its read cursor jumped).
  local dropped jumps
  dropped=$(curl -s "http://127.0.0.1:$NODE_HTTP_PORT/metrics" | awk '$1 == "kumo_broker_session_dropped_total" { print $2 }')
  jumps=$(grep -c 'Read cursor start jumped' "$WORK/up.err" || true)
  python3 - "$WORK" "$PUB_SECS" "$WARMUP" "${up0:-0}" "$up1" "${pg0:-0}" "$pg1" "${dropped:-0}" "${jumps:-0}" <<'PY'
import json, sys
work, secs, warm = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
up0, up1, pg0, pg1 = (float(x) for x in sys.argv[4:8])
dropped, jumps = sys.argv[8], sys.argv[9]
pub = json.loads(open(f"{work}/publish.json").read().strip().splitlines()[-1])
rows = [tuple(float(v) for v in l.split("\t")) for l in open(f"{work}/rows.tsv") if l.strip()]
t0, t1 = pub["started_unix"], pub["ended_unix"]
# The sustained window: from the first sample after warm-up to the last sample
# taken while publishing.
inside = [r for r in rows if t0 + warm <= r[0] <= t1]
stored = int(rows[-1][1]) if rows else 0
print("### ingest")
print(f"| devices publishing | {pub['devices']} |")
print(f"| target rate | {pub['target_rate']:.0f} readings/s for {pub['secs']:.0f} s |")
print(f"| published (PUBLISH written) | {pub['published']} ({pub['publish_rate']:.0f}/s) |")
print(f"| PUBACKs from the node | {pub['acked']} |")
print(f"| skipped (device window of unacknowledged publishes full) | {pub['skipped']} |")
print(f"| broken connections | {pub['broken']} |")
print(f"| rows stored after drain | {stored} ({stored - pub['published']:+d} vs published) |")
if len(inside) >= 2:
    (a, na), (b, nb) = inside[0], inside[-1]
    print(f"| sustained rows/s in the database | {(nb - na) / (b - a):.0f} (from t={a - t0:.0f} s to t={b - t0:.0f} s) |")
if rows:
    done = next((r for r in rows if r[1] >= pub["published"]), None)
    lag = f"{done[0] - t1:.1f} s after the last publish" if done else "never (within the drain)"
    print(f"| all published rows stored | {lag} |")
print(f"| CPU of kumo up (node + bridge) during the run | {up1 - up0:.1f} s |")
print(f"| CPU of PostgreSQL during the run | {pg1 - pg0:.1f} s |")
print(f"| CPU of the publishing client | {pub.get('client_cpu_s', 0):.1f} s |")
print(f"| node: dropped from the bridge's session backlog | {dropped} |")
print(f"| node: rumqttd read-cursor jumps (commit log overrun) | {jumps} |")
print()
print("samples (s since first publish: rows, rows/s since previous sample)")
prev = None
for t, n in rows:
    rate = f"{(n - prev[1]) / (t - prev[0]):.0f}" if prev else "-"
    print(f"  {t - t0:6.1f}  {int(n):9d}  {rate}")
    prev = (t, n)
PY
}

commands() {
  log "commands: registering $SIM_DEVICES devices and LIGHT appliances"
  local user token
  user=$("$KUMO" users create --nickname bench | awk '{ print $3; exit }')
  token=$("$KUMO" tokens create --user "$user" --scope basic --scope sendir 2>/dev/null | tail -n 1 | tr -d '[:space:]')
  "$KUMO" devices add sim-000000 --user "$user" --no-cert >/dev/null
  sql "INSERT INTO devices (id, user_id, name)
       SELECT format('sim-%s', lpad(i::text, 6, '0')), '$user', 'bench'
       FROM generate_series(1, $SIM_DEVICES - 1) AS i ON CONFLICT (id) DO NOTHING"
  local first
  first=$(curl -sf -X POST "http://127.0.0.1:$BRIDGE_PORT/1/appliances" \
    -H "Authorization: Bearer $token" \
    --data 'nickname=Light&image=ico_light&device=sim-000000&model=kumo-light-generic&model_type=LIGHT' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  # Every other appliance is a copy of the one the API made, on its own device.
  sql "INSERT INTO appliances (id, user_id, device_id, type, nickname, image, model_id, position, settings, state)
       SELECT gen_random_uuid()::text, a.user_id, d.id, a.type, a.nickname, a.image, a.model_id,
              a.position, a.settings, a.state
       FROM appliances a, devices d
       WHERE a.id = '$first' AND d.user_id = '$user' AND d.id <> a.device_id"
  sql "SELECT a.id FROM appliances a WHERE a.user_id = '$user' ORDER BY a.device_id" >"$WORK/appliances.txt"
  log "commands: $(wc -l <"$WORK/appliances.txt") appliances; starting $SIM_DEVICES sim devices"
  # IR hubs only: smart-meter gateways (10 % by default) refuse light commands.
  KUMO__SIM__METER_FRACTION=0 KUMO__SIM__PROGRESS_INTERVAL_MS=0 "$KUMO" sim --devices "$SIM_DEVICES" --nodes "127.0.0.1:$MQTT_PORT" \
    --ramp "$SIM_RAMP" >"$WORK/sim.out" 2>"$WORK/sim.err" &
  local sim=$! open=0
  for i in $(seq 1 $((SIM_DEVICES / SIM_RAMP * 4 + 120))); do
    open=$(curl -s "http://127.0.0.1:$NODE_HTTP_PORT/metrics" | awk '$1 == "kumo_broker_sessions_open" { print $2 }')
    [[ ${open%.*} -ge $SIM_DEVICES ]] && break
    kill -0 "$sim" 2>/dev/null || { echo "kumo sim exited: $(tail -5 "$WORK/sim.err")" >&2; return 1; }
    sleep 1
  done
  log "commands: node sessions open: $open; waiting for the bridge to record them"
  # The bridge stores every device's presence (online) and first state report
  # (firmware version) through its control shards; commands sent before it has
  # caught up queue behind that backlog, so the runs start only after.
  local t_conn=$SECONDS stored=0
  for i in $(seq 1 "$CATCHUP_LIMIT"); do
    stored=$(sql "SELECT count(*) FROM devices WHERE user_id = '$user' AND online AND firmware_version <> ''")
    [[ $stored -ge $SIM_DEVICES ]] && break
    sleep 1
  done
  log "commands: bridge caught up in $((SECONDS - t_conn)) s ($stored of $SIM_DEVICES devices online with state); settling 10 s"
  sleep 10
  local rate
  for rate in $CMD_RATES; do
    log "commands: $rate/s for $CMD_SECS s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    local up0 pg0 s0 up1 pg1 s1
    up0=$(cpu_s "$UP_PID"); pg0=$(pg_cpu_s); s0=$(cpu_s "$sim")
    local since
    since=$(sql "SELECT now()")
    KUMO_BENCH_TOKEN=$token "$BENCH" commands --url "http://127.0.0.1:$BRIDGE_PORT" \
      --appliances "$WORK/appliances.txt" --rate "$rate" --duration "$CMD_SECS" --wait 5 \
      >"$WORK/commands-$rate.json" 2>"$WORK/commands-$rate.err" || true
    up1=$(cpu_s "$UP_PID"); pg1=$(pg_cpu_s); s1=$(cpu_s "$sim")
    open=$(curl -s "http://127.0.0.1:$NODE_HTTP_PORT/metrics" | awk '$1 == "kumo_broker_sessions_open" { print $2 }')
    python3 - "$WORK/commands-$rate.json" "$open" "$up0" "$up1" "$pg0" "$pg1" "$s0" "$s1" <<'PY'
import json, sys
try:
    r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except (OSError, IndexError, ValueError):
    print(f"no result in {sys.argv[1]}"); sys.exit(0)
up0, up1, pg0, pg1, s0, s1 = (float(x) for x in sys.argv[3:9])
print(f"### commands at {r['target_rate']:.0f}/s ({sys.argv[2]} node sessions open at the end)")
print(f"| sent | acked (200, status acked) | 200 not acked | HTTP errors | failed | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
print(f"| {r['sent']} | {r['acked']} | {r['not_acked']} | {r['http_errors']} | {r['failed']} | "
      f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['mean_ms']:.1f} |")
if r.get("first_error"):
    print(f"first error: {r['first_error']}")
secs = r["secs"]
print(f"CPU over {secs:.0f} s: kumo up (node + bridge) {up1 - up0:.1f} s, PostgreSQL {pg1 - pg0:.1f} s, "
      f"kumo sim {s1 - s0:.1f} s")
if r["sent"]:
    per = lambda cpu: f"{cpu * 1000 / r['sent']:.2f}"
    print(f"CPU per command sent: kumo up {per(up1 - up0)} ms, PostgreSQL {per(pg1 - pg0)} ms")
PY
    # Where the time went, from the command rows: created = the REST call's
    # transaction, sent = the node's PUBACK to the bridge, completed = the
    # device's ack stored.
    sql "SELECT status, extract(epoch FROM sent_at - created_at) * 1000,
                extract(epoch FROM completed_at - sent_at) * 1000,
                extract(epoch FROM completed_at - created_at) * 1000
         FROM commands WHERE created_at >= '$since'" >"$WORK/commands-$rate.rows"
    python3 - "$WORK/commands-$rate.rows" <<'STAGES'
import collections, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
print("statuses:", dict(collections.Counter(r[0] for r in rows)))
def pct(vals, p):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, max(0, -(-int(p * len(vals) * 1000) // 1000) - 1))] if vals else float("nan")
for i, name in ((1, "created -> sent"), (2, "sent -> ack stored"), (3, "created -> ack stored")):
    v = [float(r[i]) for r in rows if r[i]]
    print(f"  {name:>22}: p50 {pct(v, .5):7.1f} ms  p99 {pct(v, .99):7.1f} ms  ({len(v)} rows)")
STAGES
  done
}

for part in $PARTS; do "$part"; done
log "done; uptime: $(uptime); raw results in $WORK"
