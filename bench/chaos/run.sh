#!/usr/bin/env bash
# Chaos with a ledger: a fleet run during which the bridge is killed (-9),
# a node is killed (-9), PostgreSQL is stopped and a node is cut from the
# bridge, each REPEAT times and restarted/healed after a pause; then the ledger
# check (check.py) proves what was accepted was kept:
#
#   - every command the API accepted (its X-Kumo-Command-Id, recorded by
#     `kumo-bench commands --samples`) ends acked, failed or expired, none
#     left queued or sent past its TTL;
#   - every QoS 1 sensor report a node acknowledged with a PUBACK (each
#     simulator process logs them: `sim.ledger_dir`) is stored exactly once,
#     each of its sensor values one row in `readings`;
#   - every device shows the presence the simulator's own session log says:
#     online while the fleet runs once the dust settled, offline after it
#     disconnected.
#
# The stack: NODES `kumo broker` processes (peered), a private PostgreSQL
# (`kumo up --no-broker --no-bridge`, stopped and started as a unit), the
# bridge alone (`kumo bridge`, reaching every node through its own
# `kumo-bench proxy`, so that one node can be cut from it), `kumo sim`
# (IR hubs, QoS 1 telemetry every REPORT_MS) and `kumo-bench commands`
# (LIGHT commands at CMD_RATE/s, `Prefer: wait=5`). Faults come every
# FAULT_GAP s in turn: bridge, a node, PostgreSQL, cut of node CUT_NODE. The
# node killed goes round from KILL_NODE (2, 3, 1 with 3 nodes): a killed
# node's devices fail over to the others and stay there, so killing the same
# node again would hit an empty one.
# Commands expire after COMMAND_TTL s, so the check can wait for every one.
#
# With CUT_KILL=1 (the default) a fifth fault follows the rounds: the node
# holding the most devices is cut from the bridge and killed (-9) halfway
# through the cut — what it acknowledged
# to devices while the bridge could not read lived only in its memory.
#
# Finally (INJECT=1) the check is run once more after deliberately breaking
# the record — one stored reading deleted, one duplicated, one acked command
# put back to `sent` past its expiry, one disconnected device shown online —
# and must fail.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench; PostgreSQL 15 server binaries and psql
#
# Usage: bench/chaos/run.sh   (tunables below, as environment variables)
# Bounded: provisioning + ramp + 4 × REPEAT × FAULT_GAP + SETTLE_SECS +
# COMMAND_TTL + ~2 min; 127.0.0.1 only; stops everything it started.
# Exit status: the ledger check's (0 = nothing lost).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/chaos
NODES=${NODES:-3}
DEVICES=${DEVICES:-15000}       # spread over the nodes (device i starts on node i mod NODES)
REPORT_MS=${REPORT_MS:-30000}   # QoS 1 telemetry period per device
RAMP=${RAMP:-500}
RAMP_LIMIT=${RAMP_LIMIT:-300}
CMD_RATE=${CMD_RATE:-20}
COMMAND_TTL=${COMMAND_TTL:-60}  # bridge.command_ttl_secs
REPEAT=${REPEAT:-3}             # times each fault is injected
FAULT_GAP=${FAULT_GAP:-20}      # s between faults
BRIDGE_DOWN=${BRIDGE_DOWN:-3}   # s the killed bridge stays down
NODE_DOWN=${NODE_DOWN:-5}       # s the killed node stays down
PG_DOWN=${PG_DOWN:-5}           # s PostgreSQL stays stopped
CUT_SECS=${CUT_SECS:-10}        # s a cut node stays unreachable from the bridge
KILL_NODE=${KILL_NODE:-2}       # the first node killed; the next rounds kill the next ones
CUT_NODE=${CUT_NODE:-1}
SETTLE_SECS=${SETTLE_SECS:-60}  # traffic without faults after the last one
CUT_KILL=${CUT_KILL:-1}         # 1 = one more fault at the end: cut the busiest node, kill -9 it mid-cut
INJECT=${INJECT:-1}             # 1 = prove the check fails on a broken record
BASE_PORT=${BASE_PORT:-29500}   # node i: BASE_PORT+i (MQTT), +20+i metrics, +40+i its proxy; +60 REST, +61 bridge metrics, +62 provisioning
WORK=${WORK:-$(mktemp -d /tmp/kumo-chaos.XXXXXX)}
source "$ROOT/bench/lib.sh"

ulimit -n 20000
need_tools
node_port() { echo $((BASE_PORT + $1)); }
node_http() { echo $((BASE_PORT + 20 + $1)); }
proxy_port() { echo $((BASE_PORT + 40 + $1)); }
BRIDGE_PORT=$((BASE_PORT + 60)) BRIDGE_METRICS_PORT=$((BASE_PORT + 61)) PROVISION_PORT=$((BASE_PORT + 62))
ports=("$BRIDGE_PORT" "$BRIDGE_METRICS_PORT" "$PROVISION_PORT")
for i in $(seq 1 "$NODES"); do ports+=("$(node_port "$i")" "$(node_http "$i")" "$(proxy_port "$i")"); done
need_free_ports "${ports[@]}"
(( NODES >= 2 && KILL_NODE <= NODES && CUT_NODE <= NODES )) || { echo "need NODES >= 2, KILL_NODE and CUT_NODE <= NODES" >&2; exit 1; }
(( (DEVICES + NODES - 2) / (NODES - 1) <= 19000 )) || { echo "with one node down the others cannot hold $DEVICES devices" >&2; exit 1; }
mkdir -p "$WORK/ledger"
chmod o+x "$WORK"   # the private PostgreSQL runs as user postgres when we are root
bench_traps

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-1} KUMO__BROKER__INGRESS_THREADS=${KUMO__BROKER__INGRESS_THREADS:-1}
: >"$WORK/events.csv"
cat >"$WORK/params.env" <<EOF
NODES=$NODES DEVICES=$DEVICES REPORT_MS=$REPORT_MS CMD_RATE=$CMD_RATE COMMAND_TTL=$COMMAND_TTL REPEAT=$REPEAT FAULT_GAP=$FAULT_GAP BRIDGE_DOWN=$BRIDGE_DOWN NODE_DOWN=$NODE_DOWN PG_DOWN=$PG_DOWN CUT_SECS=$CUT_SECS KILL_NODE=$KILL_NODE CUT_NODE=$CUT_NODE SETTLE_SECS=$SETTLE_SECS CUT_KILL=$CUT_KILL
EOF
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(cat "$WORK/params.env")"

for i in $(seq 1 "$NODES"); do "$KUMO" certs ensure-stack --node-id "node-$i" >/dev/null; done
chmod o+x "$WORK/data"
t=$SECONDS
"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null 2>"$WORK/provision.err"
log "device certificates ready in $((SECONDS - t)) s"

# ---------------------------------------------------------------- the stack
start_db() {  # the private PostgreSQL alone; DB_URL stays the same across restarts
  env -u KUMO__DATABASE__URL "$KUMO" up --no-broker --no-bridge >>"$WORK/db.out" 2>>"$WORK/db.err" &
  DB=$!
  local _
  for _ in $(seq 1 900); do
    [[ $(grep -c 'Kumo is up' "$WORK/db.out" 2>/dev/null) -ge $1 ]] && return 0
    kill -0 "$DB" 2>/dev/null || { echo "kumo up (database) exited: $(tail -3 "$WORK/db.err")" >&2; return 1; }
    sleep 0.1
  done
  return 1
}
declare -A NODE_PID
start_node() {
  local i=$1 j peers=()
  for j in $(seq 1 "$NODES"); do [[ $j != "$i" ]] && peers+=("localhost:$(node_port "$j")"); done
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$(node_http "$i") KUMO__BROKER__MAX_CONNECTIONS=19000 \
    KUMO__BROKER__PEERS=$(IFS=,; echo "${peers[*]}") \
    "$KUMO" broker --listen "127.0.0.1:$(node_port "$i")" --node-id "node-$i" >>"$WORK/node-$i.log" 2>&1 &
  NODE_PID[$i]=$!
}
declare -A PROXY_PID
start_proxy() {
  "$BENCH" proxy --listen "127.0.0.1:$(proxy_port "$1")" --upstream "127.0.0.1:$(node_port "$1")" \
    --cut-secs "$CUT_SECS" >>"$WORK/proxy-$1.log" 2>&1 &
  PROXY_PID[$1]=$!
}
BRIDGE_NODES=$(for i in $(seq 1 "$NODES"); do printf 'localhost:%s\n' "$(proxy_port "$i")"; done | paste -sd,)
start_bridge() {
  local n=$1 _
  KUMO__DATABASE__URL=$DB_URL KUMO__BROKER__NODE_ID=node-1 \
    KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
    KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT \
    KUMO__BRIDGE__MQTT__NODES=$BRIDGE_NODES \
    KUMO__BRIDGE__RATE_LIMIT__REQUESTS=100000000 \
    KUMO__BRIDGE__COMMAND_TTL_SECS=$COMMAND_TTL \
    TOKIO_WORKER_THREADS=2 \
    "$KUMO" bridge >>"$WORK/bridge.out" 2>>"$WORK/bridge.err" &
  BRIDGE=$!
  for _ in $(seq 1 600); do
    [[ $(grep -c 'kumo bridge listening' "$WORK/bridge.out" 2>/dev/null) -ge $n ]] && return 0
    kill -0 "$BRIDGE" 2>/dev/null || { echo "kumo bridge exited: $(tail -3 "$WORK/bridge.err")" >&2; return 1; }
    sleep 0.1
  done
  return 1
}

start_db 1
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/db.out" | head -n 1)
echo "$DB_URL" >"$WORK/db_url"
export KUMO__DATABASE__URL=$DB_URL   # admin commands (users, tokens, devices) go straight to it
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
for i in $(seq 1 "$NODES"); do start_node "$i"; start_proxy "$i"; done
for i in $(seq 1 "$NODES"); do wait_port "$(node_port "$i")" && wait_port "$(proxy_port "$i")"; done
BRIDGE_STARTS=1
start_bridge $BRIDGE_STARTS
log "registering $DEVICES devices"
register_fleet "$DEVICES" "http://127.0.0.1:$BRIDGE_PORT" chaos
sql "SELECT id FROM appliances WHERE user_id = '$FLEET_USER' ORDER BY device_id" >"$WORK/appliances.txt"

FAULT_SECS=$(( (4 * REPEAT + CUT_KILL) * FAULT_GAP ))
NODE_CSV=$(for i in $(seq 1 "$NODES"); do printf '127.0.0.1:%s\n' "$(node_port "$i")"; done | paste -sd,)
KUMO__SIM__METER_FRACTION=0 KUMO__SIM__TELEMETRY_QOS=1 KUMO__SIM__LEDGER_DIR=$WORK/ledger \
  "$KUMO" sim --devices "$DEVICES" --nodes "$NODE_CSV" --ramp "$RAMP" \
  --report-interval-ms "$REPORT_MS" \
  --duration $(( RAMP_LIMIT + FAULT_SECS + SETTLE_SECS + COMMAND_TTL + 600 )) \
  --summary-file "$WORK/sim-summary.json" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
t=$SECONDS
while (( SECONDS - t < RAMP_LIMIT )); do
  n=$(sim_field connected "$WORK/sim.err")
  (( ${n:-0} >= DEVICES )) && break
  kill -0 "$SIM" 2>/dev/null || { tail -3 "$WORK/sim.err" >&2; exit 1; }
  sleep 0.5
done
event all_connected "$(sim_field connected "$WORK/sim.err") of $DEVICES in $((SECONDS - t)) s"

KUMO_BENCH_TOKEN=$TOKEN "$BENCH" commands --url "http://127.0.0.1:$BRIDGE_PORT" \
  --appliances "$WORK/appliances.txt" --rate "$CMD_RATE" --duration $(( FAULT_SECS + SETTLE_SECS )) \
  --wait 5 --timeout 10 --samples "$WORK/commands.csv" >"$WORK/commands.json" 2>"$WORK/commands.err" &
CMD=$!

# ---------------------------------------------------------------- the faults
t0=$SECONDS
for step in $(seq 0 $(( 4 * REPEAT + CUT_KILL - 1 ))); do
  while (( SECONDS - t0 < (step + 1) * FAULT_GAP - FAULT_GAP / 2 )); do sleep 0.2; done
  round=$(( step / 4 + 1 ))
  kind=$(( step % 4 ))
  (( step >= 4 * REPEAT )) && kind=4
  case $kind in
    0)
      kill -9 "$BRIDGE"; wait "$BRIDGE" 2>/dev/null || true
      event kill_bridge "round $round"
      sleep "$BRIDGE_DOWN"
      BRIDGE_STARTS=$((BRIDGE_STARTS + 1))
      start_bridge $BRIDGE_STARTS
      event bridge_back "round $round" ;;
    1)
      k=$(( (KILL_NODE - 1 + round - 1) % NODES + 1 ))
      sessions=$(curl -s --max-time 2 "http://127.0.0.1:$(node_http "$k")/metrics" \
        | awk '$1 == "kumo_broker_sessions_open" { print $2 }' || true)
      kill -9 "${NODE_PID[$k]}"; wait "${NODE_PID[$k]}" 2>/dev/null || true
      event kill_node "node-$k round $round sessions ${sessions:-?}"
      sleep "$NODE_DOWN"
      start_node "$k"
      wait_port "$(node_port "$k")"
      event node_back "node-$k round $round" ;;
    2)
      stop_pid "$DB" TERM
      event stop_postgres "round $round"
      sleep "$PG_DOWN"
      start_db $(( round + 1 ))
      event postgres_back "round $round" ;;
    3)
      kill -USR1 "${PROXY_PID[$CUT_NODE]}"
      event cut_node "node-$CUT_NODE round $round for $CUT_SECS s" ;;
    4)
      # The node holding the most devices (earlier kills moved them around).
      c=$CUT_NODE most=-1
      for i in $(seq 1 "$NODES"); do
        n=$(curl -s --max-time 2 "http://127.0.0.1:$(node_http "$i")/metrics" \
          | awk '$1 == "kumo_broker_sessions_open" { print $2 }' || true)
        (( ${n:-0} > most )) && { most=${n:-0}; c=$i; }
      done
      kill -USR1 "${PROXY_PID[$c]}"
      event cut_node "node-$c ($most sessions) for $CUT_SECS s, to be killed in it"
      sleep $(( CUT_SECS / 2 ))
      kill -9 "${NODE_PID[$c]}"; wait "${NODE_PID[$c]}" 2>/dev/null || true
      event kill_node "node-$c while cut"
      sleep "$NODE_DOWN"
      start_node "$c"
      wait_port "$(node_port "$c")"
      event node_back "node-$c" ;;
  esac
done
event faults_done
wait "$CMD" || true
event commands_done "$(cat "$WORK/commands.json" 2>/dev/null | tail -n 1)"

# Every accepted command must now end within its TTL (plus the bridge's sweep).
t=$SECONDS
while (( SECONDS - t < COMMAND_TTL + 30 )); do
  open=$(sql "SELECT count(*) FROM commands WHERE status IN ('queued', 'sent')" 2>/dev/null || echo "?")
  [[ $open == 0 ]] && break
  sleep 2
done
sleep 3   # one sweep past the last expiry
event commands_settled "open $(sql "SELECT count(*) FROM commands WHERE status IN ('queued', 'sent')")"

status=0
# Presence while the fleet still runs: every device online, as its session log says.
"$HERE/check.py" "$WORK" presence | tee "$WORK/check-presence-running.txt" || status=1
stop_pid "$SIM" INT
event sim_stopped
# Readings still on their way land; the count stops moving.
last=-1
for _ in $(seq 1 12); do
  sleep 5
  n=$(sql "SELECT count(*) FROM readings")
  [[ $n == "$last" ]] && break
  last=$n
done
"$HERE/check.py" "$WORK" all | tee "$WORK/check.txt" || status=1
event check_done "status $status"

if [[ $INJECT == 1 ]]; then
  # The check must catch a broken record: one acknowledged reading lost, one
  # stored twice, one accepted command stuck in `sent` past its expiry, one
  # device's presence wrong.
  read -r dev ts sensors < <(head -n 1 "$(ls "$WORK"/ledger/readings-*.csv | head -n 1)" | tr ',' ' ')
  s=${sensors%% *}
  sql "DELETE FROM readings WHERE device_id = '$dev' AND sensor = '$s' AND at = to_timestamp($ts / 1000.0)"
  read -r dev2 ts2 sensors2 < <(tail -n 1 "$(ls "$WORK"/ledger/readings-*.csv | tail -n 1)" | tr ',' ' ')
  s2=${sensors2%% *}
  sql "INSERT INTO readings (device_id, sensor, val, at) SELECT device_id, sensor, val + 1, at FROM readings
       WHERE device_id = '$dev2' AND sensor = '$s2' AND at = to_timestamp($ts2 / 1000.0)"
  cid=$(awk -F, '$3 == "acked" && $5 != "" { print $5; exit }' "$WORK/commands.csv")
  sql "UPDATE commands SET status = 'sent', completed_at = NULL, expires_at = now() - interval '1 minute' WHERE id = '$cid'"
  sql "UPDATE devices SET online = true WHERE id = '$dev'"
  event injected "deleted $dev/$s@$ts, duplicated $dev2/$s2@$ts2, command $cid back to sent, $dev shown online"
  if "$HERE/check.py" "$WORK" all >"$WORK/check-injected.txt"; then
    echo "THE CHECK DID NOT CATCH THE INJECTED DISCREPANCIES" | tee -a "$WORK/check-injected.txt"
    status=1
  else
    echo "injected discrepancies caught (exit 1):"; grep -E 'FAIL|lost|more than once|stuck|shown' "$WORK/check-injected.txt" | head -n 12
  fi
fi

for i in $(seq 1 "$NODES"); do
  panics=$(grep -c panicked "$WORK/node-$i.log" || true)
  [[ $panics == 0 ]] || log "node-$i: $panics panics in its log"
done
stop_pid "$BRIDGE" TERM
for i in $(seq 1 "$NODES"); do stop_pid "${NODE_PID[$i]}" TERM; stop_pid "${PROXY_PID[$i]}" TERM; done
stop_pid "$DB" TERM
rm -rf "$WORK/data"
log "done (status $status); load $(cut -d' ' -f1-3 /proc/loadavg); raw files in $WORK"
exit "$status"
