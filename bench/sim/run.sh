#!/usr/bin/env bash
# Device simulator at scale against real Kumo broker nodes on this machine.
#
#   cargo build --release -p kumo
#   bash bench/sim/run.sh [NODES] [DEVICES] [DURATION_SECS] [RAMP_PER_SEC]
#
# Starts NODES broker nodes (each its own process, under the 20,000 open-file
# limit) sharing one PKI, then `kumo sim` with DEVICES devices spread over them
# (the simulator itself starts one worker process per 19,000 devices). Prints the
# simulator's summary (connected, ramp time, memory and CPU per simulated device)
# and each node's RSS per connection. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODES=${1:-2}
DEVICES=${2:-38000}
DURATION=${3:-120}
RAMP=${4:-1000}
KUMO=${KUMO:-target/release/kumo}
[ -x "$KUMO" ] || { echo "build first: cargo build --release -p kumo" >&2; exit 1; }

WORK=$(mktemp -d /tmp/kumo-bench-sim.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export KUMO__DATA_DIR=$WORK/data RUST_LOG=warn
ulimit -n 20000
"$KUMO" certs ensure-stack --node-id node-1 >/dev/null

nodes=()
for i in $(seq 1 "$NODES"); do
  port=$((18900 + i)); http=$((19900 + i))
  KUMO__BROKER__NODE_ID=node-$i KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$http \
    KUMO__BROKER__CERT=$WORK/data/pki/issued/node/node-1/cert.pem \
    KUMO__BROKER__KEY=$WORK/data/pki/issued/node/node-1/key.pem \
    "$KUMO" broker --listen 127.0.0.1:$port >"$WORK/node-$i.log" 2>&1 &
  PIDS+=($!)
  nodes+=("localhost:$port")
done
sleep 2
node_list=$(IFS=,; echo "${nodes[*]}")

# Certificates first, so the simulator's CPU figures are the devices' own.
"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null

echo "== $DEVICES devices over $NODES node(s), ramp $RAMP/s, $DURATION s" >&2
"$KUMO" sim --devices "$DEVICES" --nodes "$node_list" --ramp "$RAMP" \
  --duration "$DURATION" --summary-file "$WORK/summary.json" >/dev/null &
SIM=$!
PIDS+=($SIM)

# Sample the nodes while the fleet is connected (just before the sim stops).
sleep $((DURATION - 5))
for i in $(seq 1 "$NODES"); do
  pid=${PIDS[$((i - 1))]}
  rss_kb=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
  conns=$(curl -s "http://127.0.0.1:$((19900 + i))/metrics" \
    | awk '$1 == "kumo_broker_sessions_open" {print $2}')
  echo "node-$i: rss ${rss_kb} KiB, connections ${conns}, rss/conn $(( conns > 0 ? rss_kb * 1024 / conns : 0 )) B"
done
wait "$SIM" || true

python3 - "$WORK/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
keys = ["processes", "devices", "connected", "peak_connected", "ramp_secs", "connects",
        "failures", "drops", "published", "msgs_per_sec", "rss_bytes", "rss_per_device_bytes",
        "cpu_secs"]
for k in keys:
    if k in s:
        print(f"{k:>22}: {s[k]}")
if s.get("devices"):
    print(f"{'cpu_ms_per_device':>22}: {1000 * s['cpu_secs'] / s['devices']:.2f} over {s['elapsed_secs']} s")
PY
