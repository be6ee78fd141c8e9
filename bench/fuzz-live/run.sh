#!/usr/bin/env bash
# The live fuzzer against a running stack, on this machine, one command:
#
#   one broker node (`kumo broker`), the bridge and a private PostgreSQL
#   (`kumo up --no-broker`), DEVICES honest devices (`kumo sim`, IR hubs each
#   with a LIGHT appliance, publishing every REPORT_MS) and REST light
#   commands at CMD_RATE/s (`kumo-bench commands`, `Prefer: wait=5`); then
#
#   1. baseline  BASELINE_SECS  honest traffic only;
#   2. fuzz      FUZZ_SECS      the same + `kumo-bench fuzz`: FUZZ_CONNECTIONS
#                devices with valid certificates sending mutated MQTT 3.1.1
#                and 5 streams (up to FUZZ_PACKETS packets at FUZZ_RATE/s),
#                cut into random TLS records, reconnecting on every close;
#   3. recovery  RECOVERY_SECS  honest traffic only again.
#
# Controls: FUZZ=0 runs the same phases without the fuzzer; FUZZ=churn runs
# the fuzzer's connections at its rate with no content (each session a
# CONNECT, a SUBSCRIBE, PINGREQs and a DISCONNECT, CHURN_PACKETS long), so
# what a fuzz run leaves beyond it is what the malformed input left.
#
# Reported: node panics (lines in its log; the process must still be alive),
# honest devices' drops per phase, command p99 per phase, the node's RSS at
# the end of the baseline, its peak and after the recovery, the fuzzer's
# packets and how the node answered, and the node's disconnect counters.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench; PostgreSQL 15 server binaries and psql
#
# Usage: bench/fuzz-live/run.sh   (tunables below, as environment variables)
# Bounded: provisioning + BASELINE_SECS + FUZZ_SECS + RECOVERY_SECS + ~30 s;
# listens and connects on 127.0.0.1 only; stops everything it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUMO=${KUMO:-$ROOT/target/release/kumo}
BENCH=${BENCH:-$ROOT/target/release/kumo-bench}
DEVICES=${DEVICES:-1000}
REPORT_MS=${REPORT_MS:-10000}   # telemetry period per honest device
CMD_RATE=${CMD_RATE:-20}        # REST commands per second in every phase
BASELINE_SECS=${BASELINE_SECS:-60}
FUZZ_SECS=${FUZZ_SECS:-240}
RECOVERY_SECS=${RECOVERY_SECS:-60}
FUZZ_PACKETS=${FUZZ_PACKETS:-1000000}
FUZZ_RATE=${FUZZ_RATE:-5000}    # packets per second over all fuzzing connections
FUZZ_CONNECTIONS=${FUZZ_CONNECTIONS:-8}
FUZZ_MUTATE=${FUZZ_MUTATE:-0.02} # share of packets mutated
FUZZ_SEED=${FUZZ_SEED:-1}
FUZZ=${FUZZ:-1}                  # 0 = a control run: the same phases and honest traffic, no fuzzer;
                                 # churn = a control with the fuzzer's connection churn and no content
CHURN_PACKETS=${CHURN_PACKETS:-32} # FUZZ=churn: packets per session (a fuzz session's ~32)
BASE_PORT=${BASE_PORT:-29800}   # node MQTT; +1 its metrics, +2 bridge REST, +3 provisioning
WORK=${WORK:-$(mktemp -d /tmp/kumo-fuzz-live.XXXXXX)}

for bin in "$KUMO" "$BENCH"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
done
command -v psql >/dev/null || { echo "missing psql (PostgreSQL client)" >&2; exit 1; }
NODE_PORT=$BASE_PORT HTTP_PORT=$((BASE_PORT + 1)) BRIDGE_PORT=$((BASE_PORT + 2)) PROVISION_PORT=$((BASE_PORT + 3))
if ss -Hltn "( sport = :$NODE_PORT or sport = :$HTTP_PORT or sport = :$BRIDGE_PORT or sport = :$PROVISION_PORT )" | grep -q .; then
  echo "a port in $BASE_PORT..$((BASE_PORT + 3)) is in use; set BASE_PORT" >&2; exit 1
fi
mkdir -p "$WORK"
chmod o+x "$WORK"   # the private PostgreSQL runs as user postgres when we are root

# Only this script's own background jobs are stopped (`kumo up` stops its PostgreSQL on SIGTERM).
cleanup() {
  local pids i
  pids=$(jobs -p)
  [[ -z $pids ]] && return 0
  kill $pids 2>/dev/null || true
  for i in $(seq 1 150); do kill -0 $pids 2>/dev/null || break; sleep 0.2; done
  kill -9 $pids 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
stop_pid() {
  local i
  kill "-${2:-TERM}" "$1" 2>/dev/null || return 0
  for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# The simulator's last progress line's counter NAME (connected, drops).
sim_field() { { tail -c 4096 "$WORK/sim.err" 2>/dev/null | grep -o "$1 [0-9]*" | tail -n 1 | tr -dc 0-9; } || true; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
metrics() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" || true; }

export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
PKI=$WORK/data/pki
log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
"$KUMO" certs ensure-stack --node-id node-1 >/dev/null
chmod o+x "$WORK/data"
"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null 2>"$WORK/provision.err"

KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$HTTP_PORT \
  "$KUMO" broker --listen "127.0.0.1:$NODE_PORT" --node-id node-1 >"$WORK/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 300); do ss -Hltn "( sport = :$NODE_PORT )" | grep -q . && break; sleep 0.1; done
KUMO__BROKER__NODE_ID=node-1 \
  KUMO__BRIDGE__LISTEN=127.0.0.1:$BRIDGE_PORT \
  KUMO__BRIDGE__PROVISION__LISTEN=127.0.0.1:$PROVISION_PORT \
  KUMO__BRIDGE__MQTT__NODES=localhost:$NODE_PORT \
  KUMO__BRIDGE__RATE_LIMIT__REQUESTS=100000000 \
  "$KUMO" up --no-broker >"$WORK/up.out" 2>"$WORK/up.err" &
UP=$!
for _ in $(seq 1 900); do
  grep -q 'Kumo is up' "$WORK/up.out" 2>/dev/null && break
  kill -0 "$UP" 2>/dev/null || { cat "$WORK/up.err" >&2; exit 1; }
  sleep 0.1
done
grep -q 'Kumo is up' "$WORK/up.out" || { echo "kumo up not ready in 90 s" >&2; exit 1; }
DB_URL=$(sed -n 's/^ *url: //p' "$WORK/up.out" | head -n 1)
sql() { psql "$DB_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

# Every honest device registered to one user with a LIGHT appliance (copies of one made through the API).
user=$("$KUMO" users create --nickname fuzz-live | awk '{ print $3; exit }')
token=$("$KUMO" tokens create --user "$user" --scope basic --scope sendir 2>/dev/null | tail -n 1 | tr -d '[:space:]')
"$KUMO" devices add sim-000000 --user "$user" --no-cert >/dev/null
sql "INSERT INTO devices (id, user_id, name)
     SELECT format('sim-%s', lpad(i::text, 6, '0')), '$user', 'fuzz-live'
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
sql "SELECT id FROM appliances WHERE user_id = '$user'" >"$WORK/appliances.txt"

# Honest devices: IR hubs only (meter gateways take no light commands).
total=$((BASELINE_SECS + FUZZ_SECS + RECOVERY_SECS + 120))
KUMO__SIM__METER_FRACTION=0 "$KUMO" sim --devices "$DEVICES" --nodes "127.0.0.1:$NODE_PORT" --ramp 500 \
  --report-interval-ms "$REPORT_MS" --duration "$total" --summary-file "$WORK/sim-summary.json" \
  >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
for _ in $(seq 1 600); do
  n=$(sim_field connected)
  (( ${n:-0} >= DEVICES )) && break
  kill -0 "$SIM" 2>/dev/null || { tail -3 "$WORK/sim.err" >&2; exit 1; }
  sleep 0.5
done
log "$(sim_field connected) of $DEVICES honest devices connected; settling"
sleep 5

# RSS (KiB) and CPU time (clock ticks) of the node every second, with the phase, into rss.csv.
echo setup >"$WORK/phase"
( while kill -0 "$NODE" 2>/dev/null; do
    printf '%s,%s,%s,%s\n' "$(date +%s)" "$(cat "$WORK/phase")" "$(rss_kib "$NODE")" "$(cpu_ticks "$NODE")"
    sleep 1
  done ) >"$WORK/rss.csv" &

phase() {  # phase NAME SECS [fuzz]
  local name=$1 secs=$2 drops0 fz=
  echo "$name" >"$WORK/phase"
  drops0=$(sim_field drops)
  metrics >"$WORK/metrics-$name-start.txt"
  log "phase $name: $secs s"
  if [[ ${3:-} == fuzz && $FUZZ != 0 ]]; then
    local churn=()
    [[ $FUZZ == churn ]] && churn=(--churn "$CHURN_PACKETS")
    "$BENCH" fuzz --addr "127.0.0.1:$NODE_PORT" --pki "$PKI" --connections "$FUZZ_CONNECTIONS" \
      --packets "$FUZZ_PACKETS" --duration "$secs" --rate "$FUZZ_RATE" --mutate "$FUZZ_MUTATE" \
      --seed "$FUZZ_SEED" "${churn[@]}" >"$WORK/fuzz.json" 2>"$WORK/fuzz.err" &
    fz=$!
  fi
  KUMO_BENCH_TOKEN=$token "$BENCH" commands --url "http://127.0.0.1:$BRIDGE_PORT" \
    --appliances "$WORK/appliances.txt" --rate "$CMD_RATE" --duration "$secs" --wait 5 \
    >"$WORK/commands-$name.json" 2>"$WORK/commands-$name.err" || true
  [[ -n $fz ]] && { wait "$fz" || echo "kumo-bench fuzz exited $?" >&2; }
  metrics >"$WORK/metrics-$name-end.txt"
  echo "$(( $(sim_field drops) - drops0 ))" >"$WORK/drops-$name"
}
phase baseline "$BASELINE_SECS"
phase fuzz "$FUZZ_SECS" fuzz
phase recovery "$RECOVERY_SECS"
echo done >"$WORK/phase"
sleep 1

alive=no; kill -0 "$NODE" 2>/dev/null && alive=yes
panics=$(grep -c 'panicked' "$WORK/node.log" || true)
stop_pid "$SIM" INT
stop_pid "$NODE" TERM
stop_pid "$UP" TERM

python3 - "$WORK" "$alive" "$panics" <<'EOF'
import json, sys
work, alive, panics = sys.argv[1], sys.argv[2], sys.argv[3]
def load(name):
    try:
        return json.load(open(f"{work}/{name}"))
    except Exception as e:
        return {"error": str(e)}
def counters(path):
    out = {}
    try:
        for line in open(path):
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            if any(m in name for m in ("disconnects_total", "handshakes_total", "connects_total", "acl_denials_total", "connects_shed")):
                out[name] = float(value)
    except OSError:
        pass
    return out
rss = [l.strip().split(",") for l in open(f"{work}/rss.csv") if l.count(",") == 3]
by = lambda p: [int(r[2]) for r in rss if r[1] == p]
base, fuzz, rec = by("baseline"), by("fuzz"), by("recovery")
print(f"node alive: {alive}; panics in its log: {panics}")
for p in ("baseline", "fuzz", "recovery"):
    c = load(f"commands-{p}.json")
    drops = open(f"{work}/drops-{p}").read().strip()
    print(f"{p:9} honest drops {drops:>4}  commands sent {c.get('sent')} acked {c.get('acked')} "
          f"not acked {c.get('not_acked')} failed {c.get('failed')}  p50 {c.get('p50_ms')} ms  p99 {c.get('p99_ms')} ms")
mib = lambda k: f"{k / 1024:.1f} MiB" if k else "?"
print(f"node RSS: end of baseline {mib(base[-1] if base else 0)}, end of fuzz {mib(fuzz[-1] if fuzz else 0)}, "
      f"peak {mib(max(base + fuzz + rec, default=0))}, after recovery {mib(rec[-1] if rec else 0)}")
def cores(p):
    rows = [r for r in rss if r[1] == p]
    if len(rows) < 2:
        return "?"
    ticks = int(rows[-1][3]) - int(rows[0][3])
    return f"{ticks / 100 / max(1, int(rows[-1][0]) - int(rows[0][0])):.2f}"
print(f"node CPU (cores busy): baseline {cores('baseline')}, fuzz {cores('fuzz')}, recovery {cores('recovery')}")
f = load("fuzz.json")
print("fuzzer:", json.dumps(f))
a, b = counters(f"{work}/metrics-fuzz-start.txt"), counters(f"{work}/metrics-fuzz-end.txt")
print("node counters over the fuzz phase:")
for k in sorted(b):
    d = b[k] - a.get(k, 0)
    if d:
        print(f"  {k} +{d:.0f}")
EOF
log "done; raw files in $WORK"
