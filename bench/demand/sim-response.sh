#!/usr/bin/env bash
# Demand response over simulated households, measured (#15, parts 3 and 4):
# does an event over a simulated fleet show a real reduction in the results?
#
#   one `kumo broker` node, the bridge and a private PostgreSQL (`kumo up
#   --no-broker`), `kumo sim` with HOMES smart-meter gateways whose
#   households run their ECHONET Lite air conditioner as usual
#   (`sim.aircon_in_use_fraction` = 1) and whose meters count what it draws.
#
# Every home is an account of its own (SQL) with a token (SQL; scopes basic
# and echonetlite.*.write, which enrolling an ECHONET Lite unit takes) and
# its gateway sim-NNNNNN. Nothing is synthetic here: the past days come from
# the simulator's own households (`kumo sim --backfill-days`: each gateway
# reports BACKFILL_DAYS of its meter, simulated in accelerated time and
# stamped in the past, through the ordinary MQTT path), then the fleet goes
# live.
#
#   1. the stack, the accounts, the gateways' backfill, the fleet live;
#   2. a plan: the event fills the last WINDOW_SECS of a half hour (by default
#      all of it but 5 s at each end) that ends at 20:00 on the homes' clock
#      (`tz` of the enrolment = the simulator's `utc_offset_hours`, chosen for
#      this run so that the half hour begins as the preparation ends; in the
#      evening there is no solar output);
#   3. every home enrols its unit through the REST API with its own token
#      (max 2 °C); every other home excludes the event's hour (19 on its
#      clock) in its consent: the event skips it, and its results are the
#      control group — what High 4 of 5 says of a home nobody commanded (the
#      method's own bias on day-to-day variation: it averages the highest 4
#      of 5 days);
#   4. the event (`setpoint`, +SETPOINT_CHANGE °C, STAGGER_SECS of stagger)
#      through the aggregator API; the units move and are put back after the
#      half hour (the rebound of the restore falls in the next one);
#   5. once the half hour is over and every meter has reported past it,
#      `GET /v1/aggregator/events/{id}/results` — and, as a cross-check from
#      the same meters, their mean instantaneous power (EPC 0xE7) in the
#      WINDOW_SECS before the event and during it.
#
# The goal (exit status 0): every home measured, and the commanded homes'
# mean reduction above the control group's by more than twice the standard
# error of that difference (`sim_response.py` prints the figures and checks).
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench; PostgreSQL 15 server binaries, psql, curl ≥ 7.66
#
# Usage: HOMES=200 bench/demand/sim-response.sh   (tunables below, as environment variables)
# With LOCK_FILE set, waits until that file is absent and holds it for the run.
# Bounded: ~PREP_SECS + LEAD_SECS + WINDOW_SECS + ~3 min; 127.0.0.1 only;
# stops everything it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HOMES=${HOMES:-200}
BACKFILL_DAYS=${BACKFILL_DAYS:-16}   # 5 days off need 15 days back (Sunday event, no holiday)
BACKFILL_STEP_SECS=${BACKFILL_STEP_SECS:-600}  # the longest the bridge's max_sample_gap_secs allows
WINDOW_SECS=${WINDOW_SECS:-1790}     # the event: the whole half hour but its first and last 5 s
STAGGER_SECS=${STAGGER_SECS:-10}
SETPOINT_CHANGE=${SETPOINT_CHANGE:-2}
REPORT_MS=${REPORT_MS:-30000}        # live meter reports
PREP_SECS=${PREP_SECS:-$(( 120 + HOMES * BACKFILL_DAYS / 12 ))}  # s for backfill, live, enrolment
LEAD_SECS=${LEAD_SECS:-20}
BASE_PORT=${BASE_PORT:-29500}        # +0 MQTT, +1 node metrics, +2 REST, +3 bridge metrics, +4 provisioning
LOCK_FILE=${LOCK_FILE:-}
KEEP_DATA=${KEEP_DATA:-0}
WORK=${WORK:-$(mktemp -d /tmp/kumo-dr-sim.XXXXXX)}
source "$ROOT/bench/lib.sh"

ulimit -n 20000
need_tools
command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }
(( HOMES <= 19000 )) || { echo "one node holds at most 19,000 gateways" >&2; exit 1; }
(( STAGGER_SECS * 2 <= WINDOW_SECS && WINDOW_SECS <= 1795 )) || { echo "WINDOW_SECS must fit the half hour, STAGGER_SECS half of it" >&2; exit 1; }
NODE_PORT=$BASE_PORT NODE_HTTP=$((BASE_PORT + 1)) BRIDGE_PORT=$((BASE_PORT + 2))
BRIDGE_METRICS_PORT=$((BASE_PORT + 3)) PROVISION_PORT=$((BASE_PORT + 4))
need_free_ports "$NODE_PORT" "$NODE_HTTP" "$BRIDGE_PORT" "$BRIDGE_METRICS_PORT" "$PROVISION_PORT"
URL=http://127.0.0.1:$BRIDGE_PORT
mkdir -p "$WORK"
chmod o+x "$WORK"   # the private PostgreSQL runs as user postgres when we are root

bench_lock "$LOCK_FILE" bench/demand/sim-response

# ------------------------------------------------------------------ the plan
# The half hour ends at S_END (a whole minute) = 20:00 on the homes' clock.
now=$(date +%s)
S_END=$(( (now + PREP_SECS + LEAD_SECS + WINDOW_SECS + 5 + 59) / 60 * 60 ))
END=$((S_END - 5)) START=$((S_END - 5 - WINDOW_SECS))
off=$(( (1200 - (S_END / 60) % 1440 + 1440) % 1440 ))   # minutes east of UTC
if (( off > 840 )); then off=$((off - 1440)); fi          # offsets run from -12:00 to +14:00
abs=${off#-}
if (( off < 0 )); then sign=-; else sign=%2B; fi
TZ_PARAM=$(printf '%s%02d:%02d' "$sign" $((abs / 60)) $((abs % 60)))
OFFSET_HOURS=$(python3 -c "print($off / 60)")
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
: >"$WORK/events.csv"
cat >"$WORK/params.env" <<EOF
HOMES=$HOMES BACKFILL_DAYS=$BACKFILL_DAYS BACKFILL_STEP_SECS=$BACKFILL_STEP_SECS WINDOW_SECS=$WINDOW_SECS STAGGER_SECS=$STAGGER_SECS SETPOINT_CHANGE=$SETPOINT_CHANGE REPORT_MS=$REPORT_MS PREP_SECS=$PREP_SECS LEAD_SECS=$LEAD_SECS
START=$START END=$END HALF_HOUR_END=$S_END OFFSET_MIN=$off
EOF
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(head -n 1 "$WORK/params.env")"
event plan "window $(iso "$START") – $(iso "$END"); the homes' half hour ends $(iso "$S_END") = 20:00 at UTC offset $off min"

# ------------------------------------------------------------------ the stack
"$KUMO" certs ensure-stack --node-id node-1 >/dev/null
chmod o+x "$WORK/data"
KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$NODE_HTTP \
  "$KUMO" broker --listen "127.0.0.1:$NODE_PORT" --node-id node-1 >"$WORK/node.log" 2>&1 &
wait_port "$NODE_PORT" || { echo "the node does not listen" >&2; exit 1; }
KUMO__BROKER__NODE_ID=node-1 \
  KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
  KUMO__BRIDGE__METRICS_LISTEN=127.0.0.1:$BRIDGE_METRICS_PORT \
  KUMO__BRIDGE__PROVISION__LISTEN=127.0.0.1:$PROVISION_PORT \
  KUMO__BRIDGE__MQTT__NODES=localhost:$NODE_PORT \
  KUMO__BRIDGE__DEMAND_RESPONSE__STAGGER_SECS=$STAGGER_SECS \
  "$KUMO" up --no-broker >"$WORK/up.out" 2>"$WORK/up.err" &
UP=$!
wait_up "$WORK/up.out" "$UP" || { cat "$WORK/up.err" >&2; exit 1; }
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

# Home i: account drs-i with token drs_SECRET_i and gateway sim-i.
SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
sql "INSERT INTO users (id, nickname)
     SELECT format('drs-%s', lpad(i::text, 6, '0')), 'dr sim bench' FROM generate_series(0, $HOMES - 1) i"
sql "INSERT INTO access_tokens (id, user_id, token_hash, name, scopes)
     SELECT gen_random_uuid(), format('drs-%s', lpad(i::text, 6, '0')),
            sha256(convert_to(format('drs_${SECRET}_%s', i), 'UTF8')), 'dr sim bench',
            '{basic,echonetlite.*.write}'
     FROM generate_series(0, $HOMES - 1) i"
sql "INSERT INTO devices (id, user_id, kind, name)
     SELECT format('sim-%s', lpad(i::text, 6, '0')), format('drs-%s', lpad(i::text, 6, '0')),
            'smart_meter', 'gateway'
     FROM generate_series(0, $HOMES - 1) i"

# ------------------------------------------------------------------ backfill, then live
t=$SECONDS
KUMO__SIM__METER_FRACTION=1 KUMO__SIM__AIRCON_IN_USE_FRACTION=1 KUMO__SIM__UTC_OFFSET_HOURS=$OFFSET_HOURS \
  KUMO__SIM__BACKFILL_STEP_SECS=$BACKFILL_STEP_SECS \
  "$KUMO" sim --devices "$HOMES" --nodes "127.0.0.1:$NODE_PORT" --backfill-days "$BACKFILL_DAYS" \
  --report-interval-ms "$REPORT_MS" --duration $((PREP_SECS + LEAD_SECS + WINDOW_SECS + 900)) \
  --summary-file "$WORK/sim-summary.json" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
until [[ $(sql "SELECT count(*) FROM appliances WHERE type = 'EL_AIRCON'") -ge $HOMES \
         && $(sim_field connected "$WORK/sim.err") -ge $HOMES ]]; do
  kill -0 "$SIM" 2>/dev/null || { tail -5 "$WORK/sim.err" >&2; exit 1; }
  (( $(date +%s) < START - LEAD_SECS )) || { echo "backfill and connect overran the plan; raise PREP_SECS" >&2; exit 1; }
  sleep 2
done
event live "$HOMES gateways backfilled ($BACKFILL_DAYS days, $(sql "SELECT count(*) FROM readings WHERE sensor = 'energy'") counter readings) and live in $((SECONDS - t)) s"

AGG=$("$KUMO" aggregators create --name "dr sim bench" 2>/dev/null | tail -n 1 | tr -d '[:space:]')
PRG=$(curl -sf -X POST "$URL/v1/aggregator/programs" -H "Authorization: Bearer $AGG" --data 'name=dr-sim-bench' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# ------------------------------------------------------------------ enrolment
sql "SELECT a.id, a.user_id FROM appliances a WHERE a.type = 'EL_AIRCON' ORDER BY a.user_id" \
  | awk -F'|' -v url="$URL/v1/programs/$PRG/enrolments" -v secret="$SECRET" -v tz="$TZ_PARAM" '{
      n = $2; sub(/^drs-0*/, "", n); if (n == "") n = 0
      if (NR > 1) print "next"
      printf "url = \"%s\"\nheader = \"Authorization: Bearer drs_%s_%s\"\n", url, secret, n
      control = (n % 2 == 1) ? "&excluded_hours=19" : ""
      printf "data = \"appliance=%s&max_setpoint_change=2&tz=%s%s\"\noutput = \"/dev/null\"\n", $1, tz, control
      printf "write-out = \"%%{http_code}\\n\"\n" }' >"$WORK/enrol.curl"
curl -s --no-progress-meter --parallel --parallel-max 16 -K "$WORK/enrol.curl" >"$WORK/enrol.codes" 2>"$WORK/enrol.err" || true
event enrolled "$(sort "$WORK/enrol.codes" | uniq -c | tr '\n' ' ')"

# ------------------------------------------------------------------ the event
now=$(date +%s)
(( now <= START - LEAD_SECS )) || { echo "preparation overran the plan by $((now - START + LEAD_SECS)) s; raise PREP_SECS" >&2; exit 1; }
sleep $((START - LEAD_SECS - now))
curl -s -o "$WORK/event.json" -w '%{http_code}\n' -X POST \
  "$URL/v1/aggregator/programs/$PRG/events" -H "Authorization: Bearer $AGG" \
  --data "start=$(iso "$START")&end=$(iso "$END")&target=setpoint&setpoint_change=$SETPOINT_CHANGE" \
  >"$WORK/event-create.txt"
[[ $(cat "$WORK/event-create.txt") == 201 ]] || { echo "event creation: $(cat "$WORK/event-create.txt") $(head -c 300 "$WORK/event.json")" >&2; exit 1; }
EVENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/event.json")
event event_created "$EVENT"

# The half hour over, and every meter's next report after it (a slot needs a
# sample after its end); then the results.
while (( $(date +%s) < S_END + REPORT_MS / 1000 + 15 )); do sleep 2; done
event settled "$(sql "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n FROM dr_dispatches WHERE event_id = '$EVENT' GROUP BY 1 ORDER BY 1) s")"
curl -s -o "$WORK/results.json" -w '%{http_code} %{time_total}\n' \
  "$URL/v1/aggregator/events/$EVENT/results" -H "Authorization: Bearer $AGG" >"$WORK/results.txt"
event results "$(cat "$WORK/results.txt")"
# The cross-check: each meter's mean instantaneous power before and during the window.
psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -c "\\copy (
  SELECT device_id,
         avg(val) FILTER (WHERE at >= to_timestamp($START - $WINDOW_SECS) AND at < to_timestamp($START)) AS before_w,
         avg(val) FILTER (WHERE at >= to_timestamp($START + $STAGGER_SECS + 30) AND at < to_timestamp($END)) AS during_w
  FROM readings WHERE sensor = 'power' AND at >= to_timestamp($START - $WINDOW_SECS) AND at < to_timestamp($END)
  GROUP BY device_id ORDER BY device_id
) TO '$WORK/power.csv' CSV HEADER"
stop_pid "$SIM" INT
stop_pid "$UP" TERM

bench_finish "$ROOT/bench/demand/sim_response.py"
