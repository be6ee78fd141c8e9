#!/usr/bin/env bash
# The whole system at scale on this machine, one command:
#
#   NODES broker nodes (each its own `kumo broker` process, peered with all the
#   others) + the bridge and a private PostgreSQL (`kumo up --no-broker`, wired
#   to every node) + `kumo sim` (one worker process per 19,000 devices).
#
#   1. ramp: DEVICES devices (registered in the bridge's database, each IR hub
#      with a LIGHT appliance) connect at RAMP/s; every device publishes te/hu/il
#      (meter gateways: ECHONET Lite properties) every 60 s, plus motion events.
#   2. hold for HOLD_SECS once all are connected (or RAMP_LIMIT passed);
#      from CMD_DELAY s into the hold, REST light commands at CMD_RATE/s
#      (`kumo-bench commands`, `Prefer: wait=5`, every request recorded);
#   3. at KILL_AT s into the hold, `kill -9` of node KILL_NODE: its devices
#      reconnect to other nodes;
#   4. the simulator stops, the readings drain into PostgreSQL, the stack stops;
#   5. (MOSQUITTO=1) the ramp and a MOSQ_HOLD_SECS hold against NODES Mosquitto 2
#      processes with the same CA, node certificate and devices, for comparison.
#
# Everything is sampled every SAMPLE_SECS into CSV files (sample.py); report.py
# prints the figures (markdown) and draws fleet.png (and mosquitto.png) with
# matplotlib, installed into VENV if missing.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench
#   PostgreSQL 15 server binaries and psql; apt-get install -y mosquitto (for MOSQUITTO=1)
#
# Usage: bench/fleet/run.sh             (tunables below, as environment variables)
# Defaults target 250,000 devices on 15 nodes (16,667 per node; after the kill
# 17,857 on each of the 14 left, under the 19,000 sessions a node may hold).
# Bounded: about provisioning + RAMP_LIMIT + HOLD_SECS + DRAIN + the Mosquitto
# part; everything it started is stopped on exit. Listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/fleet
KUMO=${KUMO:-$ROOT/target/release/kumo}
BENCH=${BENCH:-$ROOT/target/release/kumo-bench}
MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
NODES=${NODES:-15}              # broker nodes, each its own process
DEVICES=${DEVICES:-250000}      # simulated devices
RAMP=${RAMP:-2500}              # new connections per second across the fleet
RAMP_LIMIT=${RAMP_LIMIT:-600}   # s the ramp may take before the hold starts anyway
HOLD_SECS=${HOLD_SECS:-300}     # hold, from all connected
CMD_RATE=${CMD_RATE:-200}       # REST commands per second during the hold
CMD_DELAY=${CMD_DELAY:-65}      # s into the hold when commands start (every hub has reported once)
KILL_AT=${KILL_AT:-180}         # s into the hold when a node is killed (0 = never)
KILL_NODE=${KILL_NODE:-$NODES}  # which node (1-based)
DRAIN=${DRAIN:-600}             # s allowed for the last readings to land (ends once they stop)
SAMPLE_SECS=${SAMPLE_SECS:-1}   # sampling period
ONLINE_SAMPLE_SECS=${ONLINE_SAMPLE_SECS:-5} # period of the bridge's /metrics (its count of devices online: 0.2 s of PostgreSQL each at 250,000)
MOSQUITTO=${MOSQUITTO:-1}       # 1 = also run the ramp and hold against Mosquitto
MOSQ_HOLD_SECS=${MOSQ_HOLD_SECS:-120}
METER_FRACTION=${METER_FRACTION:-0.1}  # share of smart-meter gateways (the sim's default)
REPORT_MS=${REPORT_MS:-60000}   # telemetry period per device (the issue's 60 s; shorter = the same message rate from fewer devices)
SENSOR_TOPICS=${SENSOR_TOPICS:-combined}  # hubs: te/hu/il in one `sensors` message, or `separate` (one per sensor)
TELEMETRY_QOS=${TELEMETRY_QOS:-1}  # 1 = readings acknowledged once stored, resent by devices when not (0 = at most once)
LEDGER=${LEDGER:-1}             # 1 = the sim records every acknowledged report; bench/chaos/check.py proves each stored once
NODE_MAX=${NODE_MAX:-19000}     # sessions one node accepts (the open-file limit is 20,000)
BASE_PORT=${BASE_PORT:-28900}   # node i listens on BASE_PORT+i, metrics on BASE_PORT+1000+i
BRIDGE_PORT=${BRIDGE_PORT:-28080}
BRIDGE_METRICS_PORT=${BRIDGE_METRICS_PORT:-29080}
PROVISION_PORT=${PROVISION_PORT:-28443}
KEEP_DATA=${KEEP_DATA:-0}       # 1 = keep WORK/data (PKI and database) after the run
VENV=${VENV:-$ROOT/target/fleet-venv}
WORK=${WORK:-$(mktemp -d /tmp/kumo-bench-fleet.XXXXXX)}

ulimit -n 20000
for bin in "$KUMO" "$BENCH"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
done
command -v psql >/dev/null || { echo "missing psql (PostgreSQL client)" >&2; exit 1; }
if [[ $MOSQUITTO == 1 && ! -x $MOSQUITTO_BIN ]]; then
  echo "missing $MOSQUITTO_BIN: apt-get install -y mosquitto (or MOSQUITTO=0)" >&2; exit 1
fi
if (( KILL_AT > 0 )); then
  (( NODES >= 2 )) || { echo "killing a node needs NODES >= 2 (or KILL_AT=0)" >&2; exit 1; }
  if (( (DEVICES + NODES - 2) / (NODES - 1) > NODE_MAX )); then
    echo "after the kill, $DEVICES devices do not fit on $((NODES - 1)) nodes of $NODE_MAX: raise NODES" >&2
    exit 1
  fi
elif (( (DEVICES + NODES - 1) / NODES > NODE_MAX )); then
  echo "$DEVICES devices do not fit on $NODES nodes of $NODE_MAX: raise NODES" >&2
  exit 1
fi
# The plot needs matplotlib: a venv of its own unless python3 already has it.
PY=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "installing matplotlib into $VENV" >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib >&2
  fi
  PY=$VENV/bin/python
fi

mkdir -p "$WORK"
# The private PostgreSQL runs as user postgres when we are root: it must enter $WORK.
chmod o+x "$WORK"
node_port() { echo $((BASE_PORT + $1)); }
node_http() { echo $((BASE_PORT + 1000 + $1)); }
ports="sport = :$BRIDGE_PORT or sport = :$BRIDGE_METRICS_PORT or sport = :$PROVISION_PORT"
for i in $(seq 1 "$NODES"); do ports+=" or sport = :$(node_port "$i") or sport = :$(node_http "$i")"; done
if ss -Hltn "( $ports )" | grep -q .; then
  echo "a port in $BASE_PORT+1..$NODES (+1000), $BRIDGE_PORT, $BRIDGE_METRICS_PORT or $PROVISION_PORT is in use; set BASE_PORT / BRIDGE_PORT / BRIDGE_METRICS_PORT / PROVISION_PORT" >&2
  exit 1
fi

# Everything this script starts is one of its background jobs; only those are
# stopped on exit (`kumo up` stops its PostgreSQL itself on SIGTERM).
cleanup() {
  local pids i
  touch "$WORK/sample.stop"
  pids=$(jobs -p)
  [[ -z $pids ]] && return 0
  kill $pids 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 $pids 2>/dev/null || break
    sleep 0.2
  done
  kill -9 $pids 2>/dev/null || true
  if [[ -n ${CG_ROOT:-} ]]; then
    # Empty once the last process has exited (PostgreSQL stops after `kumo up`).
    for i in $(seq 1 50); do
      rmdir "$CG_ROOT"/{nodes,bridge,postgres,sim,tools} "$CG_ROOT" 2>/dev/null
      [[ -d $CG_ROOT ]] || break
      sleep 0.2
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
event() { printf '%s,%s,%s\n' "$(date +%s.%N | cut -c1-14)" "$1" "${2:-}" >>"$WORK/events.csv"; log "$1 ${2:-}"; }
# The simulator's last progress line: connected, failed attempts, drops.
sim_connected() { { tail -c 4096 "$WORK/sim.err" 2>/dev/null | grep -o 'connected [0-9]*/' | tail -n 1 | tr -dc 0-9; } || true; }
stop_pid() {  # stop_pid PID [signal]: signal it and wait up to 30 s
  local i
  kill "-${2:-TERM}" "$1" 2>/dev/null || return 0
  for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
# ~30 processes share the cores: one runtime worker thread each (and one router
# ingress thread per node) instead of one per core. perf showed the nodes' time
# going mostly to futex wake-ups and task switches between their own threads;
# at 12,500 messages/s this halved command latency (BENCHMARKS.md, "Fleet").
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-1}
export KUMO__BROKER__INGRESS_THREADS=${KUMO__BROKER__INGRESS_THREADS:-1}
# The bridge (one process: every node's MQTT connections, the report shards,
# the reading writer and REST) gets two: with one, report transactions sat
# idle in the middle for seconds while its single thread served the rest.
BRIDGE_THREADS=${BRIDGE_THREADS:-2}
# Scheduling weight of the bridge and its PostgreSQL (`nice` value, inherited
# by PostgreSQL's processes). 0: the same weight as every node and simulator
# thread; on this 2-core box, ~50 busy threads then leave the bridge's 2 a tenth
# of the machine, and it waited 10 s runnable for every 1 s it ran (run 20).
BRIDGE_NICE=${BRIDGE_NICE:-0}
# 1 = each role in a CPU control group of its own with the same weight (the
# nodes together, the bridge, its PostgreSQL, the simulated fleet, the bench's
# tools), as a host running them as systemd slices would: under contention
# each role gets a fifth of the machine whatever its thread count, and what a
# role does not use goes to the others. 0 = every thread the same weight.
# Needs root and the cgroup v1 cpu controller (/sys/fs/cgroup/cpu).
CPU_GROUPS=${CPU_GROUPS:-0}
CG_ROOT=
if [[ $CPU_GROUPS == 1 ]]; then
  CG_ROOT=/sys/fs/cgroup/cpu/kumo-fleet-$$
  for g in nodes bridge postgres sim tools; do
    mkdir -p "$CG_ROOT/$g" 2>/dev/null || {
      echo "CPU_GROUPS=1: cannot create $CG_ROOT/$g (needs root and the cgroup v1 cpu controller)" >&2; exit 1; }
  done
fi
# cg_join GROUP PID: moves PID and every descendant into GROUP (no-op without
# CPU_GROUPS); processes they start later inherit it.
cg_join() {
  [[ -n $CG_ROOT ]] || return 0
  local pid=$2 child
  echo "$pid" >"$CG_ROOT/$1/cgroup.procs" 2>/dev/null || true
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do cg_join "$1" "$child"; done
}
# cg_join_postgres: the private PostgreSQL (a child of `kumo up`) into its own
# group: every process working in the data directory, the postmaster first.
cg_join_postgres() {
  [[ -n $CG_ROOT ]] || return 0
  local p pass
  # Twice: a backend forked between the listing and the postmaster's move
  # stays behind in the first pass.
  for pass in 1 2; do
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/cwd" 2>/dev/null) == "$WORK/data"* ]] && echo "${p#/proc/}" >"$CG_ROOT/postgres/cgroup.procs" 2>/dev/null
    done
  done
  return 0
}
PKI=$WORK/data/pki
: >"$WORK/events.csv"
cat >"$WORK/params.env" <<EOF
NODES=$NODES DEVICES=$DEVICES RAMP=$RAMP HOLD_SECS=$HOLD_SECS CMD_RATE=$CMD_RATE CMD_DELAY=$CMD_DELAY KILL_AT=$KILL_AT KILL_NODE=$KILL_NODE METER_FRACTION=$METER_FRACTION REPORT_MS=$REPORT_MS SENSOR_TOPICS=$SENSOR_TOPICS TELEMETRY_QOS=$TELEMETRY_QOS LEDGER=$LEDGER MOSQ_HOLD_SECS=$MOSQ_HOLD_SECS TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS BRIDGE_THREADS=$BRIDGE_THREADS BRIDGE_NICE=$BRIDGE_NICE INGRESS_THREADS=$KUMO__BROKER__INGRESS_THREADS CPU_GROUPS=$CPU_GROUPS DB_POOL=${KUMO__DATABASE__POOL_SIZE:-16}
EOF
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(cat "$WORK/params.env")"

# PKI: CA, CRL, bridge pair, and every node's server and peer pairs, made one
# after the other (the nodes would otherwise race to create them).
for i in $(seq 1 "$NODES"); do
  "$KUMO" certs ensure-stack --node-id "node-$i" >/dev/null
done
chmod o+x "$WORK/data"
t=$SECONDS
"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null 2>"$WORK/provision.err"
log "device certificates ready in $((SECONDS - t)) s"

node_list=()   # host:port of every node, for the bridge, the sim and the tap
for i in $(seq 1 "$NODES"); do node_list+=("127.0.0.1:$(node_port "$i")"); done
NODE_CSV=$(IFS=,; echo "${node_list[*]}")

start_kumo_nodes() {
  : >"$WORK/nodes.txt"
  local i j peers
  for i in $(seq 1 "$NODES"); do
    peers=()
    for j in $(seq 1 "$NODES"); do [[ $j != "$i" ]] && peers+=("localhost:$(node_port "$j")"); done
    KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$(node_http "$i") \
      KUMO__BROKER__MAX_CONNECTIONS=$NODE_MAX \
      KUMO__BROKER__PEERS=$(IFS=,; echo "${peers[*]}") \
      "$KUMO" broker --listen "127.0.0.1:$(node_port "$i")" --node-id "node-$i" \
      >"$WORK/node-$i.log" 2>&1 &
    cg_join nodes $!
    echo "node-$i $! $(node_port "$i") $(node_http "$i")" >>"$WORK/nodes.txt"
  done
  for i in $(seq 1 "$NODES"); do
    for _ in $(seq 1 300); do
      ss -Hltn "( sport = :$(node_port "$i") )" | grep -q . && break
      sleep 0.1
    done
  done
}

start_mosquitto_nodes() {
  : >"$WORK/nodes.txt"
  # Devices under their own topics; the tap (like the bridge on Kumo) reads all.
  printf 'pattern readwrite devices/%%u/#\nuser bench-tap\ntopic read devices/#\n' >"$WORK/mosquitto.acl"
  local i
  for i in $(seq 1 "$NODES"); do
    cat >"$WORK/mosquitto-$i.conf" <<CONF
user root
persistence false
log_dest stderr
log_type error
log_type warning
max_connections -1
per_listener_settings false
allow_anonymous false
acl_file $WORK/mosquitto.acl
listener $(node_port "$i") 127.0.0.1
cafile $PKI/ca.pem
certfile $PKI/issued/node/node-1/cert.pem
keyfile $PKI/issued/node/node-1/key.pem
require_certificate true
use_identity_as_username true
CONF
    "$MOSQUITTO_BIN" -c "$WORK/mosquitto-$i.conf" >"$WORK/mosquitto-$i.log" 2>&1 &
    cg_join nodes $!
    echo "mosq-$i $! $(node_port "$i") -" >>"$WORK/nodes.txt"
  done
  for i in $(seq 1 "$NODES"); do
    for _ in $(seq 1 300); do
      ss -Hltn "( sport = :$(node_port "$i") )" | grep -q . && break
      sleep 0.1
    done
  done
}

start_sampler() {  # start_sampler NAME
  rm -f "$WORK/sample.stop"
  "$PY" "$HERE/sample.py" "$WORK" "$WORK/$1-samples.csv" "$SAMPLE_SECS" "$ONLINE_SAMPLE_SECS" 2>"$WORK/$1-sampler.err" &
  SAMPLER=$!
  cg_join tools "$SAMPLER"
}
stop_sampler() { touch "$WORK/sample.stop"; wait "$SAMPLER" 2>/dev/null || true; }

# start_sim NAME: the fleet, until SIGTERM (bounded by --duration).
start_sim() {
  local duration=$((RAMP_LIMIT + HOLD_SECS + 120))
  local ledger=()
  [[ $LEDGER == 1 && $1 == kumo ]] && ledger=(KUMO__SIM__LEDGER_DIR="$WORK/ledger")
  env "${ledger[@]}" KUMO__SIM__METER_FRACTION=$METER_FRACTION KUMO__SIM__SENSOR_TOPICS=$SENSOR_TOPICS \
    KUMO__SIM__TELEMETRY_QOS=$TELEMETRY_QOS \
    "$KUMO" sim --devices "$DEVICES" --nodes "$NODE_CSV" --ramp "$RAMP" \
    --report-interval-ms "$REPORT_MS" --duration "$duration" --summary-file "$WORK/$1-summary.json" \
    >"$WORK/$1-sim.out" 2>"$WORK/sim.err" &
  SIM=$!
  cg_join sim "$SIM"
  echo "sim $SIM" >>"$WORK/groups.txt"
}

# wait_all_connected: until the sim reports every device connected, or RAMP_LIMIT.
wait_all_connected() {
  local t0=$SECONDS n
  while (( SECONDS - t0 < RAMP_LIMIT )); do
    n=$(sim_connected)
    [[ ${n:-0} -ge $DEVICES ]] && return 0
    kill -0 "$SIM" 2>/dev/null || { echo "kumo sim exited: $(tail -3 "$WORK/sim.err")" >&2; return 1; }
    sleep 0.5
  done
  log "ramp limit: $(sim_connected) of $DEVICES connected after $RAMP_LIMIT s"
}

# ---------------------------------------------------------------- Kumo
log "kumo: starting $NODES nodes"
BRIDGE_NODES=$(for i in $(seq 1 "$NODES"); do printf 'localhost:%s\n' "$(node_port "$i")"; done | paste -sd,)
start_kumo_nodes
KUMO__BROKER__NODE_ID=node-1 \
  KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
  KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT \
  KUMO__BRIDGE__PROVISION__LISTEN=127.0.0.1:$PROVISION_PORT \
  KUMO__BRIDGE__MQTT__NODES=$BRIDGE_NODES \
  KUMO__BRIDGE__RATE_LIMIT__REQUESTS=100000000 \
  KUMO__DATABASE__EMBEDDED__SHARED_PRELOAD_LIBRARIES=pg_stat_statements \
  TOKIO_WORKER_THREADS=$BRIDGE_THREADS \
  nice -n "$BRIDGE_NICE" "$KUMO" up --no-broker >"$WORK/up.out" 2>"$WORK/up.err" &
UP_PID=$!
cg_join bridge "$UP_PID"
echo "bridge $UP_PID" >"$WORK/groups.txt"
for _ in $(seq 1 900); do
  grep -q 'Kumo is up' "$WORK/up.out" 2>/dev/null && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.err" >&2; exit 1; }
  sleep 0.1
done
grep -q 'Kumo is up' "$WORK/up.out" || { echo "kumo up not ready in 90 s" >&2; exit 1; }
cg_join_postgres
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
# Per-statement figures for the report (the library is preloaded above).
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

# Every device registered to one user, each with a LIGHT appliance (a copy of
# one made through the API); commands go only to IR hubs (see CMD_DELAY).
log "kumo: registering $DEVICES devices"
user=$("$KUMO" users create --nickname fleet | awk '{ print $3; exit }')
token=$("$KUMO" tokens create --user "$user" --scope basic --scope sendir 2>/dev/null | tail -n 1 | tr -d '[:space:]')
"$KUMO" devices add sim-000000 --user "$user" --no-cert >/dev/null
sql "INSERT INTO devices (id, user_id, name)
     SELECT format('sim-%s', lpad(i::text, 6, '0')), '$user', 'fleet'
     FROM generate_series(1, $DEVICES - 1) AS i ON CONFLICT (id) DO NOTHING"
first=$(curl -sf -X POST "http://127.0.0.1:$BRIDGE_PORT/1/appliances" \
  -H "Authorization: Bearer $token" \
  --data 'nickname=Light&image=ico_light&device=sim-000000&model=kumo-light-generic&model_type=LIGHT' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sql "INSERT INTO appliances (id, user_id, device_id, type, nickname, image, model_id, position, settings, state)
     SELECT gen_random_uuid()::text, a.user_id, d.id, a.type, a.nickname, a.image, a.model_id,
            a.position, a.settings, a.state
     FROM appliances a, devices d
     WHERE a.id = '$first' AND d.user_id = '$user' AND d.id <> a.device_id"
echo "$DB_URL" >"$WORK/db_url"
echo "$BRIDGE_METRICS_PORT" >"$WORK/bridge_metrics_port"

# start_tap NAME: counts the readings every node accepts (published, as the
# cloud saw them), through one subscriber per node.
start_tap() {
  "$BENCH" tap --pki "$PKI" --nodes "$NODE_CSV" --out "$WORK/$1-tap.csv" \
    --duration $((RAMP_LIMIT + HOLD_SECS + DRAIN + 300)) >"$WORK/$1-tap.json" 2>"$WORK/$1-tap.err" &
  TAP=$!
  cg_join tools "$TAP"
  echo "tools $TAP" >>"$WORK/groups.txt"
}
start_tap kumo
sleep 2
start_sampler kumo
sleep 2
event ramp_start kumo
start_sim kumo
wait_all_connected
cg_join sim "$SIM"   # workers it started after the first move
event hold_start kumo
hold0=$SECONDS

CMD=
KILLED=
while (( SECONDS - hold0 < HOLD_SECS )); do
  held=$((SECONDS - hold0))
  if [[ -z $CMD ]] && (( held >= CMD_DELAY )); then
    # IR hubs only: a hub has reported a temperature by now, a meter gateway never does.
    sql "SELECT a.id, a.device_id FROM appliances a
         WHERE a.user_id = '$user' AND EXISTS (SELECT 1 FROM readings r
                                               WHERE r.device_id = a.device_id AND r.sensor = 'te')
         ORDER BY a.device_id" >"$WORK/appliance-devices.txt"
    cut -d'|' -f1 "$WORK/appliance-devices.txt" >"$WORK/appliances.txt"
    event cmd_start "$(wc -l <"$WORK/appliances.txt") appliances, $CMD_RATE/s"
    KUMO_BENCH_TOKEN=$token "$BENCH" commands --url "http://127.0.0.1:$BRIDGE_PORT" \
      --appliances "$WORK/appliances.txt" --rate "$CMD_RATE" \
      --duration $((HOLD_SECS - held)) --wait 5 --samples "$WORK/commands.csv" \
      >"$WORK/commands.json" 2>"$WORK/commands.err" &
    CMD=$!
    cg_join tools "$CMD"
    echo "tools $CMD" >>"$WORK/groups.txt"
  fi
  if [[ -z $KILLED ]] && (( KILL_AT > 0 && held >= KILL_AT )); then
    pid=$(awk -v n="node-$KILL_NODE" '$1 == n { print $2 }' "$WORK/nodes.txt")
    sessions=$(curl -s "http://127.0.0.1:$(node_http "$KILL_NODE")/metrics" \
      | awk '$1 == "kumo_broker_sessions_open" { print $2 }')
    # The event first: a sample taken between the kill and a later event
    # would count the killed node's first drops as drops outside the kill.
    event kill "node-$KILL_NODE pid $pid sessions ${sessions:-?} sim_connected $(sim_connected)"
    kill -9 "$pid"
    KILLED=1
  fi
  sleep 0.5
done
event hold_end "sim_connected $(sim_connected) online $(sql "SELECT count(*) FROM devices WHERE online")"
[[ -n $CMD ]] && { wait "$CMD" || true; }
stop_pid "$SIM" INT
event sim_stopped kumo
# Drain: until the readings count stops moving (two equal samples 5 s apart).
last=-1
t=$SECONDS
while (( SECONDS - t < DRAIN )); do
  sleep 5
  n=$(sql "SELECT count(*) FROM readings")
  [[ $n == "$last" ]] && break
  last=$n
done
stop_pid "$TAP" TERM
event drained "readings $(sql "SELECT count(*) FROM readings") after $((SECONDS - t)) s"
sql "SELECT status, count(*) FROM commands GROUP BY status" >"$WORK/command-statuses.txt" || true
if [[ $LEDGER == 1 ]]; then
  # Every report a node acknowledged (the sim's ledger) stored exactly once.
  python3 "$ROOT/bench/chaos/check.py" "$WORK" readings >"$WORK/ledger-readings.txt" 2>&1 || true
  event ledger "$(grep -E '^(PASS|FAIL)' "$WORK/ledger-readings.txt" | head -n 1)"
fi
# Each command's stages (created = the REST transaction, sent = the node's
# PUBACK to the bridge, completed = the device's ack stored), for the report.
rows_sql="SELECT extract(epoch FROM created_at) AS created, extract(epoch FROM sent_at) AS sent, extract(epoch FROM completed_at) AS completed, status, attempts, node_id, device_id FROM commands ORDER BY created_at"
psql "$DB_URL" -X -q -c "\\copy ($rows_sql) TO '$WORK/command-rows.csv' CSV HEADER" || true
# Where PostgreSQL's time went: scans per table, and the statements that
# took the most time and read the most blocks.
psql "$DB_URL" -X -c "SELECT relname, seq_scan, seq_tup_read, idx_scan, n_live_tup, n_tup_ins, n_tup_upd,
    last_autoanalyze, last_autovacuum FROM pg_stat_user_tables ORDER BY seq_tup_read DESC LIMIT 12" \
  >"$WORK/pg-tables.txt" 2>&1 || true
psql "$DB_URL" -X -c "SELECT calls, round(total_exec_time) AS total_ms,
    round(mean_exec_time::numeric, 3) AS mean_ms, rows, shared_blks_hit + shared_blks_read AS blocks,
    left(regexp_replace(query, '\s+', ' ', 'g'), 300) AS query
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25" \
  >"$WORK/pg-statements.txt" 2>&1 || true
stop_sampler
while read -r _ pid _ _; do stop_pid "$pid" TERM; done <"$WORK/nodes.txt"
stop_pid "$UP_PID" TERM
log "kumo: stopped"

# ---------------------------------------------------------------- Mosquitto
if [[ $MOSQUITTO == 1 ]]; then
  log "mosquitto: starting $NODES processes"
  start_mosquitto_nodes
  : >"$WORK/groups.txt"
  rm -f "$WORK/db_url" "$WORK/bridge_metrics_port"
  mv "$WORK/sim.err" "$WORK/kumo-sim.err"
  start_tap mosquitto
  start_sampler mosquitto
  sleep 2
  event ramp_start mosquitto
  start_sim mosquitto
  wait_all_connected || true
  event hold_start mosquitto
  sleep "$MOSQ_HOLD_SECS"
  event hold_end "mosquitto sim_connected $(sim_connected)"
  stop_pid "$SIM" INT
  event sim_stopped mosquitto
  sleep 2
  stop_pid "$TAP" TERM
  stop_sampler
  while read -r _ pid _ _; do stop_pid "$pid" TERM; done <"$WORK/nodes.txt"
  mv "$WORK/sim.err" "$WORK/mosquitto-sim.err"
else
  mv "$WORK/sim.err" "$WORK/kumo-sim.err"
fi

"$PY" "$HERE/report.py" "$WORK" | tee "$WORK/results.md"
# The PKI (a certificate per device) and the database take ~1 GB per 40,000
# devices; the CSV files, logs and plots stay.
[[ $KEEP_DATA == 1 ]] || rm -rf "$WORK/data"
log "done; load $(cut -d' ' -f1-3 /proc/loadavg); raw files and plots in $WORK"
