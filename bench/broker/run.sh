#!/usr/bin/env bash
# Broker comparison: Kumo node vs Mosquitto 2 vs stock rumqttd 0.20, all over
# mutual TLS with one certificate per device, on this machine.
#
# For each broker in turn: start it, hold $DEVICES idle device connections from
# $PROCS client processes (RSS per connection), then run a full-handshake
# connect pass and a resumed pass of $RATE_COUNT devices (connects/s, broker CPU
# per handshake), stop it. Prints a table with ratios; raw JSON lines stay in
# the work directory.
#
# Prerequisites (this script builds nothing):
#   cargo build --release -p kumo -p kumo-bench
#   apt-get install -y mosquitto            # Debian's Mosquitto 2
#   cargo install rumqttd --version 0.20.0 --features verify-client-cert --root /tmp/rumqttd-bin
#
# Usage: bench/broker/run.sh            (tunables below, as environment variables)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUMO=${KUMO:-$ROOT/target/release/kumo}
BENCH=${BENCH:-$ROOT/target/release/kumo-bench}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
RUMQTTD=${RUMQTTD:-/tmp/rumqttd-bin/bin/rumqttd}
BROKERS=${BROKERS:-"kumo mosquitto rumqttd"}   # any subset, in this order
DEVICES=${DEVICES:-19000}        # idle connections held at once
PROCS=${PROCS:-2}                # client processes holding them (20,000 fds each)
HOLD_CONC=${HOLD_CONC:-128}      # connects in flight per holding process
HOLD_LIMIT=${HOLD_LIMIT:-300}    # s a holding process keeps starting connects
RATE_COUNT=${RATE_COUNT:-5000}   # devices in each rate pass
RATE_CONC=${RATE_CONC:-64}       # connects in flight in a rate pass
RATE_LIMIT=${RATE_LIMIT:-120}    # s a rate pass keeps starting connects
SETTLE=${SETTLE:-5}              # s between the last CONNACK and the RSS reading
PORT=${PORT:-38883}
HTTP_PORT=${HTTP_PORT:-39883}
WORK=${WORK:-$(mktemp -d /tmp/kumo-bench.XXXXXX)}

ulimit -n 20000
for bin in "$BENCH" "$KUMO"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
done

# Everything this script starts runs as one of its background jobs; only those
# are stopped on exit.
cleanup() {
  local pids
  pids=$(jobs -p)
  [[ -z $pids ]] && return 0
  kill $pids 2>/dev/null || true
  sleep 1
  kill -9 $pids 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Broker-side sockets only: a client socket may have drawn $PORT as its ephemeral port.
established() { ss -Htn state established "( src 127.0.0.1:$PORT )" | wc -l; }

# One PKI for all three brokers: CA, CRL and the node's server certificate.
DATA=$WORK/data
PKI=$DATA/pki
KUMO__DATA_DIR=$DATA "$KUMO" certs --dir "$PKI" ensure-stack --node-id node-1 \
  --san localhost --san 127.0.0.1 >/dev/null
NODE_CERT=$PKI/issued/node/node-1/cert.pem
NODE_KEY=$PKI/issued/node/node-1/key.pem

start_kumo() {
  KUMO__DATA_DIR=$DATA KUMO__LOG__FILTER=warn \
    KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$HTTP_PORT \
    KUMO__BROKER__MAX_CONNECTIONS=$((DEVICES + 500)) \
    "$KUMO" broker --listen "127.0.0.1:$PORT" --node-id node-1 >"$WORK/kumo.log" 2>&1 &
  BROKER_PID=$!
}

start_mosquitto() {
  printf 'pattern readwrite devices/%%u/#\n' >"$WORK/mosquitto.acl"
  cat >"$WORK/mosquitto.conf" <<CONF
user root
persistence false
log_dest stderr
log_type error
log_type warning
max_connections -1
per_listener_settings false
allow_anonymous false
acl_file $WORK/mosquitto.acl
listener $PORT 127.0.0.1
cafile $PKI/ca.pem
certfile $NODE_CERT
keyfile $NODE_KEY
require_certificate true
use_identity_as_username true
CONF
  "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!
}

start_rumqttd() {
  [[ -x $RUMQTTD ]] || { echo "missing $RUMQTTD (see prerequisites)" >&2; return 1; }
  cat >"$WORK/rumqttd.toml" <<CONF
id = 0

[router]
id = 0
max_connections = $((DEVICES + 500))
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-tls"
listen = "127.0.0.1:$PORT"
next_connection_delay_ms = 0
    [v4.1.tls]
    capath = "$PKI/ca.pem"
    certpath = "$NODE_CERT"
    keypath = "$NODE_KEY"
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
CONF
  "$RUMQTTD" --quiet -c "$WORK/rumqttd.toml" >"$WORK/rumqttd.log" 2>&1 &
  BROKER_PID=$!
}

wait_listening() {
  local i
  for i in $(seq 1 300); do
    if ss -Hltn "( sport = :$PORT )" | grep -q .; then return 0; fi
    kill -0 "$BROKER_PID" 2>/dev/null || { echo "$1 exited; see $WORK/$1.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$1 did not listen on $PORT within 30 s" >&2
  return 1
}

stop_broker() {
  local i
  kill "$BROKER_PID" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
}

# bench_one <name> <index>: writes $WORK/<name>.json (one summary object).
bench_one() {
  local name=$1 index=$2 per=$((DEVICES / PROCS)) p pids=() i
  log "$name: starting"
  if ss -Hltn "( sport = :$PORT or sport = :$HTTP_PORT )" | grep -q .; then
    echo "port $PORT or $HTTP_PORT is already in use; set PORT / HTTP_PORT" >&2
    return 1
  fi
  "start_$name"
  wait_listening "$name"
  sleep 1
  local rss0 cpu0
  rss0=$(rss_kib "$BROKER_PID")
  cpu0=$(cpu_ticks "$BROKER_PID")
  log "$name: pid $BROKER_PID, RSS ${rss0} KiB; holding $DEVICES connections from $PROCS processes"
  for p in $(seq 0 $((PROCS - 1))); do
    "$BENCH" hold --addr "127.0.0.1:$PORT" --pki "$PKI" --prefix hold --first $((p * per)) \
      --count "$per" --concurrency "$HOLD_CONC" --time-limit "$HOLD_LIMIT" \
      --source-ip "127.$((index + 1)).0.$((p + 10))" >"$WORK/$name-hold-$p.json" 2>"$WORK/$name-hold-$p.err" &
    pids+=($!)
  done
  # Each holder prints its report once its last connect finished or failed
  # (a holder that died counts as finished; its .err file says why).
  for i in $(seq 1 $(((HOLD_LIMIT + 120) * 10))); do
    local done=0
    for p in $(seq 0 $((PROCS - 1))); do
      if [[ -s $WORK/$name-hold-$p.json ]] || ! kill -0 "${pids[$p]}" 2>/dev/null; then
        done=$((done + 1))
      fi
    done
    [[ $done -eq $PROCS ]] && break
    sleep 0.1
  done
  local cpu1 held rss1
  cpu1=$(cpu_ticks "$BROKER_PID")
  sleep "$SETTLE"
  held=$(established)
  rss1=$(rss_kib "$BROKER_PID")
  log "$name: $held established, RSS ${rss1} KiB"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  sleep 3
  log "$name: rate passes ($RATE_COUNT devices, $RATE_CONC in flight)"
  "$BENCH" rate --addr "127.0.0.1:$PORT" --pki "$PKI" --prefix rate --count "$RATE_COUNT" \
    --concurrency "$RATE_CONC" --time-limit "$RATE_LIMIT" --resume --broker-pid "$BROKER_PID" \
    --source-ip "127.$((index + 1)).1.1" >"$WORK/$name-rate.json" 2>"$WORK/$name-rate.err" || true
  stop_broker
  # A broker that died mid-run leaves no /proc entry: report no growth rather than fail.
  [[ -n $rss1 ]] || rss1=$rss0
  [[ -n $cpu1 ]] || cpu1=$cpu0
  python3 - "$WORK" "$name" "$PROCS" "$rss0" "$rss1" "$held" "$cpu0" "$cpu1" <<'PY'
import json, sys
work, name, procs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rss0, rss1, held, cpu0, cpu1 = (int(x) for x in sys.argv[4:9])
def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except OSError:
        return []
holds = [l for p in range(procs) for l in lines(f"{work}/{name}-hold-{p}.json")]
rate = {l["pass"]: l for l in lines(f"{work}/{name}-rate.json")}
ok = sum(h["ok"] for h in holds)
out = {
    "broker": name,
    "held_established": held,
    "hold_ok": ok,
    "hold_failed": sum(h["attempted"] - h["ok"] for h in holds),
    "hold_first_error": next((h["first_error"] for h in holds if h["first_error"]), None),
    # The holders start together; each times its own connects (not its certificate issuance).
    "hold_connect_rate": ok / max(h["secs"] for h in holds) if holds else None,
    "hold_cpu_ms_per_connect": (cpu1 - cpu0) * 10 / ok if ok else None,
    "rss0_kib": rss0, "rss1_kib": rss1,
    "rss_kib_per_conn": (rss1 - rss0) / held if held else None,
    "full": rate.get("full"), "resumed": rate.get("resumed"),
}
json.dump(out, open(f"{work}/{name}.json", "w"))
PY
  log "$name: done"
}

log "work directory $WORK; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
for b in $BROKERS; do
  bench_one "$b" "$i" || log "$b: FAILED (see $WORK)"
  i=$((i + 1))
done

python3 - "$WORK" $BROKERS <<'PY'
import json, sys
work, names = sys.argv[1], sys.argv[2:]
res = {}
for n in names:
    try:
        res[n] = json.load(open(f"{work}/{n}.json"))
    except OSError:
        pass
def g(r, *path):
    for k in path:
        r = r.get(k) if isinstance(r, dict) else None
    return r
rows = [
    ("idle connections held", lambda r: g(r, "held_established"), "{:.0f}", "higher"),
    ("RSS per idle connection (KiB)", lambda r: g(r, "rss_kib_per_conn"), "{:.1f}", "lower"),
    ("connect rate while filling (conn/s)", lambda r: g(r, "hold_connect_rate"), "{:.0f}", "higher"),
    ("full-handshake connect rate (conn/s)", lambda r: g(r, "full", "rate_per_s"), "{:.0f}", "higher"),
    ("broker CPU per full handshake (ms)", lambda r: g(r, "full", "broker_cpu_ms_per_connect"), "{:.3f}", "lower"),
    ("resumed connect rate (conn/s)", lambda r: g(r, "resumed", "rate_per_s"), "{:.0f}", "higher"),
    ("  of which TLS-resumed", lambda r: g(r, "resumed", "resumed"), "{:.0f}", "higher"),
    ("broker CPU per resumed connect (ms)", lambda r: g(r, "resumed", "broker_cpu_ms_per_connect"), "{:.3f}", "lower"),
]
def fmt(v, f):
    return "-" if v is None else f.format(v)
hdr = ["metric"] + names
others = [n for n in names if n != "kumo"] if "kumo" in names else []
hdr += [f"kumo/{o}" for o in others]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for label, get, f, _ in rows:
    vals = [get(res.get(n, {})) for n in names]
    cells = [label] + [fmt(v, f) for v in vals]
    k = get(res.get("kumo", {})) if "kumo" in names else None
    for o in others:
        v = get(res.get(o, {}))
        cells.append(f"{k / v:.2f}" if k is not None and v else "-")
    print("| " + " | ".join(cells) + " |")
for n in names:
    r = res.get(n, {})
    errs = [g(r, "hold_first_error"), g(r, "full", "first_error"), g(r, "resumed", "first_error")]
    fails = [r.get("hold_failed"), sum(g(r, p, k) or 0 for p in ("full", "resumed")
             for k in ("failed_tcp", "failed_tls", "failed_mqtt", "failed_timeout"))]
    print(f"{n}: hold failures {fails[0]}, rate failures {fails[1]}; first errors: {[e for e in errs if e]}")
PY
log "raw results in $WORK"
