#!/usr/bin/env bash
# The soak: one broker node holding DEVICES simulated devices for SOAK_SECS,
# with CHURN_PER_MIN of them reconnecting every minute, readings flowing and
# REST commands at CMD_RATE/s:
#
#   one `kumo broker` node, the bridge and a private PostgreSQL (`kumo up
#   --no-broker`), `kumo sim` (IR hubs and meter gateways, each device making
#   clean disconnects at random — `sim.chaos.disconnects_per_hour` = churn ×
#   60 — and reconnecting after up to OFFLINE_MAX_MS; readings at QoS
#   TELEMETRY_QOS), and from CMD_DELAY s on
#   `kumo-bench commands` (LIGHT commands to the IR hubs, `Prefer: wait=5`,
#   every request recorded).
#
# Every SAMPLE_SECS: the node's RSS and open descriptors (/proc/PID/fd), the
# bridge's RSS, the simulator's connected count and drops (samples.csv). At
# the end report.py prints the node's RSS growth after WARMUP_SECS (in %), the
# range of its descriptors, command p99 per minute and its trend, and draws
# soak.png.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench; PostgreSQL 15 server binaries and psql
#
# Usage: SOAK_SECS=3600 bench/soak/run.sh   (tunables below, as environment variables)
# Bounded: provisioning + ramp (≤ RAMP_LIMIT) + SOAK_SECS + ~30 s; listens and
# connects on 127.0.0.1 only; stops everything it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/soak
DEVICES=${DEVICES:-19000}       # on the one node (its open-file limit is 20,000)
SOAK_SECS=${SOAK_SECS:-3600}    # from all connected to the end
WARMUP_SECS=${WARMUP_SECS:-300} # RSS growth is measured from here (s into the soak)
CHURN_PER_MIN=${CHURN_PER_MIN:-0.1} # share of devices reconnecting per minute
OFFLINE_MAX_MS=${OFFLINE_MAX_MS:-5000} # longest pause offline after a churn disconnect
REPORT_MS=${REPORT_MS:-60000}   # telemetry period per device
METER_FRACTION=${METER_FRACTION:-0.1}
TELEMETRY_QOS=${TELEMETRY_QOS:-1}  # 1 = each reading held by the node until the bridge stored it (0 = at most once)
CMD_RATE=${CMD_RATE:-50}        # REST commands per second
CMD_DELAY=${CMD_DELAY:-65}      # s into the soak when commands start (every hub has reported once)
RAMP=${RAMP:-500}               # connects per second
RAMP_LIMIT=${RAMP_LIMIT:-300}   # s the ramp may take
SAMPLE_SECS=${SAMPLE_SECS:-5}
BASE_PORT=${BASE_PORT:-29700}   # node MQTT; +1 its metrics, +2 bridge REST, +3 provisioning, +4 bridge metrics
WORK=${WORK:-$(mktemp -d /tmp/kumo-soak.XXXXXX)}
source "$ROOT/bench/lib.sh"

ulimit -n 20000
need_tools
NODE_PORT=$BASE_PORT HTTP_PORT=$((BASE_PORT + 1)) BRIDGE_PORT=$((BASE_PORT + 2))
PROVISION_PORT=$((BASE_PORT + 3)) BRIDGE_METRICS_PORT=$((BASE_PORT + 4))
need_free_ports "$NODE_PORT" "$HTTP_PORT" "$BRIDGE_PORT" "$PROVISION_PORT" "$BRIDGE_METRICS_PORT"
(( DEVICES <= 19000 )) || { echo "one node holds at most 19,000 devices" >&2; exit 1; }
use_matplotlib
mkdir -p "$WORK"
chmod o+x "$WORK"   # the private PostgreSQL runs as user postgres when we are root
bench_traps

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
PKI=$WORK/data/pki
: >"$WORK/events.csv"
churn_per_hour=$(python3 -c "print($CHURN_PER_MIN * 60)")
cat >"$WORK/params.env" <<EOF
DEVICES=$DEVICES SOAK_SECS=$SOAK_SECS WARMUP_SECS=$WARMUP_SECS CHURN_PER_MIN=$CHURN_PER_MIN OFFLINE_MAX_MS=$OFFLINE_MAX_MS REPORT_MS=$REPORT_MS METER_FRACTION=$METER_FRACTION TELEMETRY_QOS=$TELEMETRY_QOS CMD_RATE=$CMD_RATE CMD_DELAY=$CMD_DELAY SAMPLE_SECS=$SAMPLE_SECS
EOF
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(cat "$WORK/params.env")"

"$KUMO" certs ensure-stack --node-id node-1 >/dev/null
chmod o+x "$WORK/data"
t=$SECONDS
"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null 2>"$WORK/provision.err"
log "device certificates ready in $((SECONDS - t)) s"

KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$HTTP_PORT KUMO__BROKER__MAX_CONNECTIONS=19500 \
  "$KUMO" broker --listen "127.0.0.1:$NODE_PORT" --node-id node-1 >"$WORK/node.log" 2>&1 &
NODE=$!
wait_port "$NODE_PORT" || { echo "the node does not listen" >&2; exit 1; }
KUMO__BROKER__NODE_ID=node-1 \
  KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
  KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT \
  KUMO__BRIDGE__PROVISION__LISTEN=127.0.0.1:$PROVISION_PORT \
  KUMO__BRIDGE__MQTT__NODES=localhost:$NODE_PORT \
  KUMO__BRIDGE__RATE_LIMIT__REQUESTS=100000000 \
  "$KUMO" up --no-broker >"$WORK/up.out" 2>"$WORK/up.err" &
UP=$!
wait_up "$WORK/up.out" "$UP" || { cat "$WORK/up.err" >&2; exit 1; }
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
log "registering $DEVICES devices"
register_fleet "$DEVICES" "http://127.0.0.1:$BRIDGE_PORT" soak

# The fleet, churning, until the soak ends (bounded by --duration).
KUMO__SIM__METER_FRACTION=$METER_FRACTION KUMO__SIM__TELEMETRY_QOS=$TELEMETRY_QOS \
  KUMO__SIM__CHAOS__DISCONNECTS_PER_HOUR=$churn_per_hour \
  KUMO__SIM__CHAOS__OFFLINE_MAX_MS=$OFFLINE_MAX_MS \
  "$KUMO" sim --devices "$DEVICES" --nodes "127.0.0.1:$NODE_PORT" --ramp "$RAMP" \
  --report-interval-ms "$REPORT_MS" --duration $((RAMP_LIMIT + SOAK_SECS + 60)) \
  --summary-file "$WORK/sim-summary.json" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
t=$SECONDS
# With churn, a few devices are always offline: 99 % connected ends the ramp.
while (( SECONDS - t < RAMP_LIMIT )); do
  n=$(sim_field connected "$WORK/sim.err")
  (( ${n:-0} * 100 >= DEVICES * 99 )) && break
  kill -0 "$SIM" 2>/dev/null || { tail -3 "$WORK/sim.err" >&2; exit 1; }
  sleep 0.5
done
event soak_start "connected $(sim_field connected "$WORK/sim.err") of $DEVICES in $((SECONDS - t)) s"

# samples.csv: time, node RSS (KiB), node fds, node CPU ticks, bridge RSS, sim connected, sim drops.
( echo "unix_s,node_rss_kib,node_fds,node_cpu_ticks,bridge_rss_kib,sim_connected,sim_drops"
  while kill -0 "$NODE" 2>/dev/null; do
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$(date +%s)" "$(rss_kib "$NODE")" "$(fd_count "$NODE")" \
      "$(cpu_ticks "$NODE")" "$(rss_kib "$UP")" "$(sim_field connected "$WORK/sim.err")" \
      "$(sim_field drops "$WORK/sim.err")"
    sleep "$SAMPLE_SECS"
  done ) >"$WORK/samples.csv" &
SAMPLER=$!

soak0=$SECONDS
sleep "$(( CMD_DELAY < SOAK_SECS ? CMD_DELAY : SOAK_SECS ))"
# IR hubs only: a hub has reported a temperature by now, a meter gateway never does.
sql "SELECT a.id FROM appliances a
     WHERE a.user_id = '$FLEET_USER' AND EXISTS (SELECT 1 FROM readings r
                                                 WHERE r.device_id = a.device_id AND r.sensor = 'te')
     ORDER BY a.device_id" >"$WORK/appliances.txt"
left=$(( SOAK_SECS - (SECONDS - soak0) ))
if (( left > 0 )) && [[ -s $WORK/appliances.txt ]]; then
  event cmd_start "$(wc -l <"$WORK/appliances.txt") appliances, $CMD_RATE/s for $left s"
  KUMO_BENCH_TOKEN=$TOKEN "$BENCH" commands --url "http://127.0.0.1:$BRIDGE_PORT" \
    --appliances "$WORK/appliances.txt" --rate "$CMD_RATE" --duration "$left" --wait 5 \
    --samples "$WORK/commands.csv" >"$WORK/commands.json" 2>"$WORK/commands.err" || true
fi
while (( SECONDS - soak0 < SOAK_SECS )); do sleep 1; done
event soak_end "connected $(sim_field connected "$WORK/sim.err"); node alive: $(kill -0 "$NODE" 2>/dev/null && echo yes || echo no)"
# The node's end-to-end acknowledgement counters (QoS 1 copies answered unconfirmed,
# routed again, deadlines moved on), for report.py.
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^kumo_broker_confirm_' >"$WORK/node-confirm.txt" || true
panics=$(cat "$WORK/node.log" "$WORK/up.err" 2>/dev/null | grep -c 'panicked' || true)
echo "PANICS=$panics" >>"$WORK/params.env"
stop_pid "$SIM" INT
stop_pid "$SAMPLER" TERM
stop_pid "$NODE" TERM
stop_pid "$UP" TERM

"$PY" "$HERE/report.py" "$WORK" | tee "$WORK/results.md"
rm -rf "$WORK/data"   # the PKI and the database: ~0.5 GB per 19,000 devices
log "done; load $(cut -d' ' -f1-3 /proc/loadavg); raw files and soak.png in $WORK"
