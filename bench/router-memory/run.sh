#!/usr/bin/env bash
# Where a node's memory goes under traffic: one `kumo broker` node, one
# reader in the bridge's place (`mosquitto_sub` with the bridge's service
# certificate, QoS 1 on `devices/+/sensors/#`: the one filter a reading
# matches), `kumo-bench publish` sending QoS 1 readings
# (`devices/{id}/sensors/te`) from DEVICES devices at RATE/s for SECS s. The
# node's RSS is sampled every second; printed: RSS before, every 10 % of the
# messages, and at the end, with the growth per message. If the router's log
# is what grows, RSS levels off once the filter's log holds its cap
# (`broker.router_log_mib` of topic + payload bytes, `broker/src/fabric.rs`);
# a leak would keep growing.
#
# Prerequisites: cargo build --release -p kumo -p kumo-bench; mosquitto_sub
# Usage: bench/router-memory/run.sh   (DEVICES, RATE, SECS, BASE_PORT)
# Bounded: SECS + ~20 s; 127.0.0.1 only; stops what it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEVICES=${DEVICES:-200}
RATE=${RATE:-5000}
SECS=${SECS:-180}
BASE_PORT=${BASE_PORT:-29900}   # node MQTT; +1 its metrics
WORK=${WORK:-$(mktemp -d /tmp/kumo-router-memory.XXXXXX)}
source "$ROOT/bench/lib.sh"

need_tools
need_free_ports "$BASE_PORT" "$((BASE_PORT + 1))"
mkdir -p "$WORK"
bench_traps
export KUMO__DATA_DIR=$WORK/data KUMO__LOG__FILTER=warn RUST_LOG=warn
"$KUMO" certs ensure-stack --node-id node-1 >/dev/null
KUMO__BROKER__HTTP_LISTEN=127.0.0.1:$((BASE_PORT + 1)) \
  "$KUMO" broker --listen "127.0.0.1:$BASE_PORT" --node-id node-1 >"$WORK/node.log" 2>&1 &
NODE=$!
wait_port "$BASE_PORT" || { echo "the node does not listen" >&2; exit 1; }
SERVICE=$WORK/data/pki/issued/service/bridge
mosquitto_sub -h 127.0.0.1 -p "$BASE_PORT" --cafile "$WORK/data/pki/ca.pem" \
  --cert "$SERVICE/cert.pem" --key "$SERVICE/key.pem" -i bridge.memory -q 1 \
  -t 'devices/+/sensors/#' >/dev/null 2>"$WORK/reader.err" &
READER=$!
( while kill -0 "$NODE" 2>/dev/null; do echo "$(date +%s.%N | cut -c1-14),$(rss_kib "$NODE")"; sleep 1; done ) >"$WORK/rss.csv" &
sleep 2
"$BENCH" publish --addr "127.0.0.1:$BASE_PORT" --pki "$WORK/data/pki" --count "$DEVICES" \
  --rate "$RATE" --duration "$SECS" >"$WORK/publish.json" 2>"$WORK/publish.err"
sleep 2
kill -0 "$READER" 2>/dev/null || { echo "the reader stopped: $(cat "$WORK/reader.err")" >&2; exit 1; }
stop_pid "$READER" TERM
stop_pid "$NODE" TERM
python3 - "$WORK" "$RATE" "$SECS" <<'EOF'
import json, sys
work, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [l.strip().split(",") for l in open(f"{work}/rss.csv") if l.count(",") == 1]
rss = [(float(t), int(k) / 1024) for t, k in rows if k.isdigit() and int(k) > 0]
report = json.loads(open(f"{work}/publish.json").read().strip().splitlines()[-1])
acked = report.get("acked", 0)
print(f"published {report.get('published', 0):,}, acknowledged {acked:,} at {report.get('publish_rate', 0):,.0f}/s")
t0, base = rss[0]
print(f"node RSS before: {base:.1f} MiB")
span = rss[-1][0] - t0
for i in range(1, 11):
    t = t0 + span * i / 10
    v = min(rss, key=lambda r: abs(r[0] - t))[1]
    print(f"  after {i * 10:3d} % of the run (~{rate * secs * i / 10:,.0f} messages offered): {v:.1f} MiB")
peak = max(v for _, v in rss)
print(f"node RSS peak {peak:.1f} MiB, end {rss[-1][1]:.1f} MiB")
t30 = t0 + span * 0.3
v30 = min(rss, key=lambda r: abs(r[0] - t30))[1]
if acked:
    print(f"growth per acknowledged message over the first 30 %: {(v30 - base) * 1024 * 1024 / (acked * 0.3):,.0f} bytes")
EOF
log "raw files in $WORK"
rm -rf "$WORK/data"
