#!/usr/bin/env bash
# What a peer hop adds: an integration on one node, one device on the same
# node and one on a peer node, readings up and commands down on both paths at
# once (kumo-bench peer-hop, one clock). Run against two peered Kumo nodes,
# then against two Mosquitto 2 brokers joined by a Mosquitto bridge (the
# usual way to join Mosquitto brokers) with the same certificates.
#
#   cargo build --release -p kumo -p kumo-bench
#   bash bench/peering/run.sh [RATE_PER_PATH] [SECS]
#
# Prints one JSON report per broker and a table of the percentiles. Everything
# started is stopped on exit; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${1:-200}
SECS=${2:-30}
KUMO=${KUMO:-target/release/kumo}
BENCH=${BENCH:-target/release/kumo-bench}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BROKERS=${BROKERS:-"kumo mosquitto"}
for b in "$KUMO" "$BENCH"; do
  [ -x "$b" ] || { echo "build first: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/kumo-bench-peering.XXXXXX)
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

DATA=$WORK/data
PKI=$DATA/pki
export KUMO__DATA_DIR=$DATA KUMO__LOG__FILTER=warn
for n in 1 2; do
  "$KUMO" certs --dir "$PKI" ensure-stack --node-id node-$n --san localhost --san 127.0.0.1 >/dev/null
done
A=18971 B=18972

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; exit 1
}

start_kumo() {
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:19971 KUMO__BROKER__PEERS=localhost:$B \
    "$KUMO" broker --listen 127.0.0.1:$A --node-id node-1 >"$WORK/kumo-1.log" 2>&1 &
  PIDS+=($!)
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:19972 KUMO__BROKER__PEERS=localhost:$A \
    "$KUMO" broker --listen 127.0.0.1:$B --node-id node-2 >"$WORK/kumo-2.log" 2>&1 &
  PIDS+=($!)
}

mosquitto_conf() { # name port [bridge-to-port]
  cat <<CONF
user root
persistence false
log_dest stderr
log_type error
log_type warning
per_listener_settings false
allow_anonymous false
listener $2 127.0.0.1
cafile $PKI/ca.pem
certfile $PKI/issued/node/$1/cert.pem
keyfile $PKI/issued/node/$1/key.pem
require_certificate true
use_identity_as_username true
CONF
  if [ -n "${3:-}" ]; then
    cat <<CONF
connection $1-to-peer
address 127.0.0.1:$3
bridge_protocol_version mqttv311
cleansession true
try_private true
bridge_cafile $PKI/ca.pem
bridge_certfile $PKI/issued/service/peer-$1/cert.pem
bridge_keyfile $PKI/issued/service/peer-$1/key.pem
bridge_insecure false
remote_clientid peer-$1
topic devices/+/sensors/# out 0
topic devices/+/commands in 1
CONF
  fi
}

start_mosquitto() {
  mosquitto_conf node-1 $A >"$WORK/mosquitto-1.conf"
  mosquitto_conf node-2 $B $A >"$WORK/mosquitto-2.conf"
  "$MOSQUITTO" -c "$WORK/mosquitto-1.conf" >"$WORK/mosquitto-1.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  "$MOSQUITTO" -c "$WORK/mosquitto-2.conf" >"$WORK/mosquitto-2.log" 2>&1 &
  PIDS+=($!)
}

echo "== peer hop: $RATE msg/s per path and direction, $SECS s ($(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
for broker in $BROKERS; do
  "start_$broker"
  wait_port $A; wait_port $B
  sleep 1
  "$BENCH" peer-hop --pki "$PKI" --local localhost:$A --remote localhost:$B \
    --rate "$RATE" --duration "$SECS" >"$WORK/$broker.json"
  stop_all
  echo "$broker: $(cat "$WORK/$broker.json")"
done

python3 - "$WORK" $BROKERS <<'PY'
import json, sys
work, brokers = sys.argv[1], sys.argv[2:]
rows = {b: json.load(open(f"{work}/{b}.json")) for b in brokers}
print(f"{'broker':<10} {'path':<36} {'sent':>6} {'recv':>6} {'dup':>4} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>8}")
for b, r in rows.items():
    for p in r["paths"]:
        print(f"{b:<10} {p['path']:<36} {p['sent']:>6} {p['received']:>6} {p['duplicates']:>4} "
              f"{p['p50_us']:>8} {p['p90_us']:>8} {p['p99_us']:>8} {p['max_us']:>8}")
for b, r in rows.items():
    by = {p["path"]: p for p in r["paths"]}
    for kind in ("reading", "command"):
        local = by[f"{kind}, device on the same node"]
        peer = by[f"{kind}, device on a peer node"]
        print(f"{b}: peer hop adds to a {kind}: p50 +{peer['p50_us'] - local['p50_us']} µs, "
              f"p99 +{peer['p99_us'] - local['p99_us']} µs")
PY
