#!/usr/bin/env bash
# Demand response at scale (#15, part 5): one event over HOMES enrolled homes.
#
#   NODES broker nodes (peered; a node holds under 20,000 sessions), the bridge
#   and a private PostgreSQL (`kumo up --no-broker`), `kumo sim` (HOMES IR hubs,
#   each acking the aircon commands it gets).
#
# Every home is an account of its own (SQL) with a token (SQL, SHA-256 as the
# bridge stores them; scopes basic and sendir), an IR hub sim-NNNNNN with an air conditioner (APPLIANCE_
# MODEL, made once through the API, confirmed cooling at 26 °C by its hub, then
# copied in SQL) and a smart-meter gateway meter-NNNNNN that never connects: its
# readings are SYNTHETIC, written straight into `readings` in the form the
# bridge stores a meter's (cumulative `energy` counts, scale in
# smart_meter_properties → meter_scale_log). The simulated IR units load no
# meter, so the results' reduction measures nothing here: the figures are
# the cost of computing them over 20,000 homes, not a demand response.
#
#   1. the stack, the homes, the fleet connected; one aggregator, one program;
#   2. every home enrols its unit through the REST API (curl --parallel, each
#      with its own token), max 2 °C, on a clock (`tz`) chosen so that the
#      event fills the end of one of its half hours (a baseline needs whole
#      half hours; without this the bench would wait up to 30 min for one);
#   3. HISTORY_DAYS past days of meter readings every 5 min over that half hour
#      (±10 min), SYNTHETIC, one INSERT … SELECT;
#   4. the event (`setpoint`, +2 °C, WINDOW_SECS long, STAGGER_SECS of
#      stagger) created through the aggregator API; its commands and restores
#      run; every unit's command and restore are read back from the database:
#      planned time, queued, outcome (acked / failed / expired / skipped);
#   5. the event's half hour of readings (SYNTHETIC, as above) once it is
#      over; `GET /v1/aggregator/events/{id}/results`, timed.
#
# The goal (exit status 0): every unit's command outcome is recorded by
# start + spread + 10 s and every restore's by end + spread + 10 s (spread =
# STAGGER_SECS, at most half the window), and the results answer in seconds
# (RESULTS_GOAL_SECS).
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench; PostgreSQL 15 server binaries, psql, curl ≥ 7.66
#
# Usage: HOMES=20000 bench/demand/run.sh   (tunables below, as environment variables)
# With LOCK_FILE set, waits until that file is absent, holds it (its content:
# LOCK_NAME) for the run and removes it on exit: a machine-wide "heavy run in
# progress" flag that the benchmarks sharing a machine respect.
# Bounded: provisioning + ramp (≤ RAMP_LIMIT) + PREP_SECS + WINDOW_SECS +
# STAGGER_SECS + SETTLE_SECS + the results; 127.0.0.1 only; stops everything
# it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HOMES=${HOMES:-20000}
NODE_MAX=${NODE_MAX:-19000}     # sessions one node accepts (the open-file limit is 20,000)
NODES=${NODES:-$(( (HOMES + NODE_MAX - 1) / NODE_MAX ))}
STAGGER_SECS=${STAGGER_SECS:-90}   # bridge.demand_response.stagger_secs
WINDOW_SECS=${WINDOW_SECS:-240}    # the event's window (the spread is at most half of it)
SETPOINT_CHANGE=${SETPOINT_CHANGE:-2}
POLL_MS=${POLL_MS:-1000}           # bridge.demand_response.poll_interval_ms (its default)
HISTORY_DAYS=${HISTORY_DAYS:-21}   # past days of synthetic meter readings (5 weekend days need 20)
PREP_SECS=${PREP_SECS:-$(( 60 + HOMES / 150 ))}  # s allowed for enrolment + history before the event's lead
LEAD_SECS=${LEAD_SECS:-$(( 15 + HOMES / 1000 ))} # s between creating the event and its start
SETTLE_SECS=${SETTLE_SECS:-60}     # s after the last restore is due before reading outcomes anyway
RESULTS_GOAL_SECS=${RESULTS_GOAL_SECS:-10}
APPLIANCE_MODEL=${APPLIANCE_MODEL:-kumo-ac-generic}
APPLIANCE_TYPE=${APPLIANCE_TYPE:-AC}
ENROL_PARALLEL=${ENROL_PARALLEL:-32}
REPORT_MS=${REPORT_MS:-300000}     # the hubs' sensor reports (not used here; kept rare)
RAMP=${RAMP:-1000}
RAMP_LIMIT=${RAMP_LIMIT:-300}
BASE_PORT=${BASE_PORT:-29400}      # node i: +i MQTT, +10+i metrics; +20 REST, +21 bridge metrics, +22 provisioning
LOCK_FILE=${LOCK_FILE:-}
LOCK_NAME=${LOCK_NAME:-bench/demand}
KEEP_DATA=${KEEP_DATA:-0}
WORK=${WORK:-$(mktemp -d /tmp/kumo-demand.XXXXXX)}
source "$ROOT/bench/lib.sh"

ulimit -n 20000
need_tools
command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }
(( (HOMES + NODES - 1) / NODES <= NODE_MAX )) || { echo "$HOMES homes do not fit on $NODES nodes" >&2; exit 1; }
node_port() { echo $((BASE_PORT + $1)); }
node_http() { echo $((BASE_PORT + 10 + $1)); }
BRIDGE_PORT=$((BASE_PORT + 20)) BRIDGE_METRICS_PORT=$((BASE_PORT + 21)) PROVISION_PORT=$((BASE_PORT + 22))
ports=("$BRIDGE_PORT" "$BRIDGE_METRICS_PORT" "$PROVISION_PORT")
for i in $(seq 1 "$NODES"); do ports+=("$(node_port "$i")" "$(node_http "$i")"); done
need_free_ports "${ports[@]}"
URL=http://127.0.0.1:$BRIDGE_PORT
mkdir -p "$WORK"
chmod o+x "$WORK"   # the private PostgreSQL runs as user postgres when we are root

bench_lock "$LOCK_FILE" "$LOCK_NAME"

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-1}   # as bench/fleet: many processes, 2 cores
export KUMO__BROKER__INGRESS_THREADS=${KUMO__BROKER__INGRESS_THREADS:-1}
BRIDGE_THREADS=${BRIDGE_THREADS:-2}
: >"$WORK/events.csv"
cat >"$WORK/params.env" <<EOF
HOMES=$HOMES NODES=$NODES STAGGER_SECS=$STAGGER_SECS WINDOW_SECS=$WINDOW_SECS SETPOINT_CHANGE=$SETPOINT_CHANGE POLL_MS=$POLL_MS HISTORY_DAYS=$HISTORY_DAYS PREP_SECS=$PREP_SECS LEAD_SECS=$LEAD_SECS APPLIANCE_MODEL=$APPLIANCE_MODEL REPORT_MS=$REPORT_MS BRIDGE_THREADS=$BRIDGE_THREADS
EOF
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(cat "$WORK/params.env")"

# ------------------------------------------------------------------ the stack
for i in $(seq 1 "$NODES"); do "$KUMO" certs ensure-stack --node-id "node-$i" >/dev/null; done
chmod o+x "$WORK/data"
t=$SECONDS
"$KUMO" sim --devices "$HOMES" --provision-only >/dev/null 2>"$WORK/provision.err"
log "device certificates ready in $((SECONDS - t)) s"
nodes=() bridge_nodes=()
for i in $(seq 1 "$NODES"); do
  nodes+=("127.0.0.1:$(node_port "$i")") bridge_nodes+=("localhost:$(node_port "$i")")
done
for i in $(seq 1 "$NODES"); do
  peers=()
  for j in $(seq 1 "$NODES"); do [[ $j != "$i" ]] && peers+=("localhost:$(node_port "$j")"); done
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$(node_http "$i") KUMO__BROKER__MAX_CONNECTIONS=$NODE_MAX \
    KUMO__BROKER__PEERS=$(IFS=,; echo "${peers[*]}") \
    "$KUMO" broker --listen "127.0.0.1:$(node_port "$i")" --node-id "node-$i" >"$WORK/node-$i.log" 2>&1 &
done
for i in $(seq 1 "$NODES"); do wait_port "$(node_port "$i")" || { echo "node $i does not listen" >&2; exit 1; }; done
KUMO__BROKER__NODE_ID=node-1 \
  KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
  KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT \
  KUMO__BRIDGE__PROVISION__LISTEN=127.0.0.1:$PROVISION_PORT \
  KUMO__BRIDGE__MQTT__NODES=$(IFS=,; echo "${bridge_nodes[*]}") \
  KUMO__BRIDGE__DEMAND_RESPONSE__STAGGER_SECS=$STAGGER_SECS \
  KUMO__BRIDGE__DEMAND_RESPONSE__POLL_INTERVAL_MS=$POLL_MS \
  KUMO__DATABASE__EMBEDDED__SHARED_PRELOAD_LIBRARIES=pg_stat_statements \
  TOKIO_WORKER_THREADS=$BRIDGE_THREADS \
  "$KUMO" up --no-broker >"$WORK/up.out" 2>"$WORK/up.err" &
UP=$!
wait_up "$WORK/up.out" "$UP" || { cat "$WORK/up.err" >&2; exit 1; }
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

# ------------------------------------------------------------------ the homes
# Home i: account drb-i, token drb_SECRET_i (scope basic), IR hub sim-i, meter
# gateway meter-i; both devices land in the account's home (migration 0013).
t=$SECONDS
SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
sql "INSERT INTO users (id, nickname)
     SELECT format('drb-%s', lpad(i::text, 6, '0')), 'dr bench' FROM generate_series(0, $HOMES - 1) i"
sql "INSERT INTO access_tokens (id, user_id, token_hash, name, scopes)
     SELECT gen_random_uuid(), format('drb-%s', lpad(i::text, 6, '0')),
            sha256(convert_to(format('drb_${SECRET}_%s', i), 'UTF8')), 'dr bench', '{basic,sendir}'
     FROM generate_series(0, $HOMES - 1) i"
sql "INSERT INTO devices (id, user_id, kind, name)
     SELECT format('%s-%s', k, lpad(i::text, 6, '0')), format('drb-%s', lpad(i::text, 6, '0')),
            CASE k WHEN 'sim' THEN 'remo' ELSE 'smart_meter' END, k
     FROM generate_series(0, $HOMES - 1) i, unnest(ARRAY['sim', 'meter']) k"
token0=drb_${SECRET}_0
first=$(curl -sf -X POST "$URL/1/appliances" -H "Authorization: Bearer $token0" \
  --data "nickname=Aircon&image=ico_ac_1&device=sim-000000&model=$APPLIANCE_MODEL&model_type=$APPLIANCE_TYPE" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
event homes "$HOMES accounts, tokens and devices in $((SECONDS - t)) s"

# The fleet, until the end (bounded by --duration).
KUMO__SIM__METER_FRACTION=0 \
  "$KUMO" sim --devices "$HOMES" --nodes "$(IFS=,; echo "${nodes[*]}")" --ramp "$RAMP" \
  --report-interval-ms "$REPORT_MS" \
  --duration $((RAMP_LIMIT + PREP_SECS + LEAD_SECS + 2 * WINDOW_SECS + STAGGER_SECS + SETTLE_SECS + 600)) \
  --summary-file "$WORK/sim-summary.json" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
t=$SECONDS
while (( SECONDS - t < RAMP_LIMIT )); do
  n=$(sim_field connected "$WORK/sim.err")
  (( ${n:-0} >= HOMES )) && break
  kill -0 "$SIM" 2>/dev/null || { tail -3 "$WORK/sim.err" >&2; exit 1; }
  sleep 0.5
done
event connected "$(sim_field connected "$WORK/sim.err") of $HOMES in $((SECONDS - t)) s"

# Home 0's unit cooling at 26 °C, confirmed by its hub; every other home gets
# a copy of that appliance, confirmed settings included (an event skips a unit
# that is off).
for _ in $(seq 1 30); do   # until the hub is known online and acks
  curl -s -o "$WORK/cool.json" -D "$WORK/cool.headers" -X POST "$URL/1/appliances/$first/aircon_settings" \
    -H "Authorization: Bearer $token0" -H 'Prefer: wait=5' \
    --data 'operation_mode=cool&temperature=26&button=' || true
  grep -qi '^x-kumo-command-status: acked' "$WORK/cool.headers" && break
  sleep 1
done
sleep 1   # the ack's confirmed settings
[[ $(sql "SELECT (settings->>'temp') || (settings->>'button') FROM appliances WHERE id = '$first'") == 26 ]] \
  || { echo "the first unit never confirmed cooling at 26: $(head -c 300 "$WORK/cool.json")" >&2; exit 1; }
sql "INSERT INTO appliances (id, user_id, device_id, type, nickname, image, model_id, position, settings, state)
     SELECT gen_random_uuid()::text, d.user_id, d.id, a.type, a.nickname, a.image, a.model_id,
            a.position, a.settings, a.state
     FROM appliances a, devices d
     WHERE a.id = '$first' AND d.kind = 'remo' AND d.id LIKE 'sim-%' AND d.id <> a.device_id"
event appliances "$(sql "SELECT count(*) FROM appliances WHERE settings->>'temp' = '26' AND settings->>'button' = ''") units cooling at 26"

AGG=$("$KUMO" aggregators create --name "dr bench" 2>/dev/null | tail -n 1 | tr -d '[:space:]')
PRG=$(curl -sf -X POST "$URL/v1/aggregator/programs" -H "Authorization: Bearer $AGG" --data 'name=dr-bench' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# ------------------------------------------------------------------ the plan
# The event fills the end of one half hour on the homes' clock: that half hour
# ends at S_END (a whole minute), the window ends 5 s before it. The clock's
# offset (+09:00 to +09:29) makes S_END a half-hour boundary there.
now=$(date +%s)
S_END=$(( (now + PREP_SECS + LEAD_SECS + WINDOW_SECS + 5 + 59) / 60 * 60 ))
END=$((S_END - 5)) START=$((S_END - 5 - WINDOW_SECS)) S=$((S_END - 1800))
off=$(( 540 + (30 - (S_END / 60) % 30) % 30 ))
TZ_PARAM=$(printf '%%2B%02d:%02d' $((off / 60)) $((off % 60)))
SPREAD=$(( STAGGER_SECS < WINDOW_SECS / 2 ? STAGGER_SECS : WINDOW_SECS / 2 ))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
cat >>"$WORK/params.env" <<EOF
START=$START END=$END SPREAD=$SPREAD HALF_HOUR_START=$S OFFSET_MIN=$off
EOF
event plan "window $(iso "$START") – $(iso "$END"), spread $SPREAD s, homes' half hour $(iso "$S") – $(iso "$S_END") (utc offset $off min)"

# ------------------------------------------------------------------ enrolment
sql "SELECT a.id, a.user_id FROM appliances a WHERE a.user_id LIKE 'drb-%' ORDER BY a.user_id" \
  | awk -F'|' -v url="$URL/v1/programs/$PRG/enrolments" -v secret="$SECRET" -v tz="$TZ_PARAM" '{
      n = $2; sub(/^drb-0*/, "", n); if (n == "") n = 0
      if (NR > 1) print "next"
      printf "url = \"%s\"\nheader = \"Authorization: Bearer drb_%s_%s\"\n", url, secret, n
      printf "data = \"appliance=%s&max_setpoint_change=2&tz=%s\"\noutput = \"/dev/null\"\n", $1, tz
      printf "write-out = \"%%{http_code}\\n\"\n" }' >"$WORK/enrol.curl"
t=$SECONDS
curl -s --no-progress-meter --parallel --parallel-max "$ENROL_PARALLEL" -K "$WORK/enrol.curl" >"$WORK/enrol.codes" 2>"$WORK/enrol.err" || true
enrol_secs=$((SECONDS - t))
event enrolled "$(sort "$WORK/enrol.codes" | uniq -c | tr '\n' ' ') in $enrol_secs s; $(sql "SELECT count(*) FROM dr_enrolments") rows"

# ------------------------------------------------------------------ history (SYNTHETIC)
# Per meter: unit 0.001 kWh (0xE1 = 3), coefficient 1, 8 digits; a base
# count, each day ~12 kWh on, and in the band S-10 min .. S_END a steady draw
# of 150–750 W varying by ±20 % from day to day. Readings every 5 min.
t=$SECONDS
sql "SELECT kumo_ensure_readings_partition(to_timestamp($S) - d * interval '1 day')
     FROM generate_series(0, $HISTORY_DAYS) d" >/dev/null
sql "INSERT INTO smart_meter_properties (device_id, epc, name, val, updated_at)
     SELECT d.id, p.epc, p.name, p.val, to_timestamp($S) - interval '$HISTORY_DAYS days 1 hour'
     FROM devices d, (VALUES (211, 'coefficient', '1'), (225, 'unit', '3'),
                             (215, 'effective_digits', '8')) p (epc, name, val)
     WHERE d.kind = 'smart_meter' AND d.id LIKE 'meter-%'"
# meter_readings FROM_DAY TO_DAY: the band of days FROM_DAY..TO_DAY before the event's (0 = its own).
meter_readings() {
  sql "INSERT INTO readings (device_id, sensor, val, at)
       SELECT m.id, 'energy',
              m.base + ($HISTORY_DAYS - k) * 12000
                + floor(j * 5 * m.wh_per_min * (0.8 + 0.4 * (abs(hashtext(m.id || k)) % 1000) / 1000.0)),
              to_timestamp($S) - k * interval '1 day' + (j * 5 - 10) * interval '1 minute'
       FROM (SELECT id, abs(hashtext(id)) % 10000000 AS base,
                    2.5 + (abs(hashtext(id || 'w')) % 1000) / 100.0 AS wh_per_min
             FROM devices WHERE kind = 'smart_meter' AND id LIKE 'meter-%') m,
            generate_series($1, $2) k, generate_series(0, 8) j"
}
meter_readings 1 "$HISTORY_DAYS"
sql "ANALYZE readings" 
event history "$(sql "SELECT count(*) FROM readings WHERE sensor = 'energy'") synthetic meter readings in $((SECONDS - t)) s"

# ------------------------------------------------------------------ the event
now=$(date +%s)
if (( now > START - LEAD_SECS )); then
  echo "preparation overran: $((now - START + LEAD_SECS)) s past the plan; raise PREP_SECS" >&2
  exit 1
fi
sleep $((START - LEAD_SECS - now))
sql "SELECT pg_stat_statements_reset()" >/dev/null
event event_create "at $(iso "$(date +%s)"); load $(cut -d" " -f1-3 /proc/loadavg)"
curl -s -o "$WORK/event.json" -w '%{http_code} %{time_total}\n' -X POST \
  "$URL/v1/aggregator/programs/$PRG/events" -H "Authorization: Bearer $AGG" \
  --data "start=$(iso "$START")&end=$(iso "$END")&target=setpoint&setpoint_change=$SETPOINT_CHANGE" \
  >"$WORK/event-create.txt"
read -r code create_secs <"$WORK/event-create.txt"
[[ $code == 201 ]] || { echo "event creation: $code $(head -c 300 "$WORK/event.json")" >&2; exit 1; }
EVENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/event.json")
event event_created "$EVENT: $(sql "SELECT count(*) FROM dr_dispatches WHERE event_id = '$EVENT'") units in $create_secs s"

# Wait for every row to leave pending/dispatched and every command to be
# final, or SETTLE_SECS after the last restore is due.
while :; do
  open=$(sql "SELECT count(*) FROM dr_dispatches d
              LEFT JOIN commands c ON c.id = d.command_id LEFT JOIN commands r ON r.id = d.restore_command_id
              WHERE d.event_id = '$EVENT' AND (d.state IN ('pending', 'dispatched')
                    OR c.status IN ('queued', 'sent') OR r.status IN ('queued', 'sent'))")
  (( open == 0 )) && break
  (( $(date +%s) > END + SPREAD + SETTLE_SECS )) && { log "$open units still open"; break; }
  sleep 2
done
event settled "$(sql "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n FROM dr_dispatches WHERE event_id = '$EVENT' GROUP BY 1 ORDER BY 1) s")"

# ------------------------------------------------------------------ outcomes
# Per unit and step: planned (dispatch_at / restore_at), queued (the command's
# created_at), outcome (its completed_at; a skip's own time).
psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -c "\\copy (
  SELECT d.appliance_id, d.state, d.reason,
         extract(epoch FROM d.dispatch_at) AS dispatch_at, extract(epoch FROM c.created_at) AS queued_at,
         extract(epoch FROM c.completed_at) AS done_at, c.status,
         extract(epoch FROM d.restore_at) AS restore_at, extract(epoch FROM r.created_at) AS restore_queued_at,
         extract(epoch FROM r.completed_at) AS restore_done_at, r.status AS restore_status,
         extract(epoch FROM d.updated_at) AS updated_at
  FROM dr_dispatches d LEFT JOIN commands c ON c.id = d.command_id
  LEFT JOIN commands r ON r.id = d.restore_command_id WHERE d.event_id = '$EVENT'
) TO '$WORK/units.csv' CSV HEADER"

# ------------------------------------------------------------------ results
# The event's half hour of readings (SYNTHETIC, as the history), now over.
while (( $(date +%s) < S_END + 1 )); do sleep 1; done
meter_readings 0 0
for i in 1 2; do
  curl -s -o "$WORK/results-$i.json" -w '%{http_code} %{time_total}\n' \
    "$URL/v1/aggregator/events/$EVENT/results" -H "Authorization: Bearer $AGG" >"$WORK/results-$i.txt"
  event results "$(cat "$WORK/results-$i.txt")"
done
curl -s -o "$WORK/event-view.json" -w '%{http_code} %{time_total}\n' \
  "$URL/v1/aggregator/events/$EVENT" -H "Authorization: Bearer $AGG" >"$WORK/event-view.txt"
psql "$DB_URL" -X -c "SELECT calls, round(total_exec_time) AS total_ms,
    round(mean_exec_time::numeric, 3) AS mean_ms, rows,
    left(regexp_replace(query, '\s+', ' ', 'g'), 240) AS query
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25" >"$WORK/pg-statements.txt" 2>&1 || true
stop_pid "$SIM" INT
stop_pid "$UP" TERM

bench_finish "$ROOT/bench/demand/report.py"
