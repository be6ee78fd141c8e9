#!/usr/bin/env bash
# Reconnect storm, with and without TLS session resumption, side by side.
#
# Two `kumo broker` nodes of one PKI (sharing its session ticket secret) and
# `kumo sim` with DEVICES devices spread over both. Once all are connected,
# node A is killed with kill -9; its devices reconnect to node B. Reported per
# variant: seconds until every device is connected again, node B's CPU during
# that time, the connects that resumed, and the simulator's RSS per device.
# The variants differ only in `sim.tls_resumption`; ROUNDS alternates them.
#
# Prerequisites: cargo build --release -p kumo
# Usage: bench/storm/run.sh        (DEVICES=8000 ROUNDS=2 PORT=29101)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUMO=${KUMO:-$ROOT/target/release/kumo}
DEVICES=${DEVICES:-8000}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-29101}
WORK=${WORK:-$(mktemp -d /tmp/kumo-storm.XXXXXX)}
export KUMO__DATA_DIR=$WORK/data
ulimit -n 20000
[[ -x $KUMO ]] || { echo "missing $KUMO: cargo build --release -p kumo" >&2; exit 1; }

"$KUMO" sim --devices "$DEVICES" --provision-only >/dev/null 2>&1
"$KUMO" certs ensure-stack --node-id node-a >/dev/null
"$KUMO" certs ensure-stack --node-id node-b >/dev/null

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
connected() { grep -o 'connected [0-9]*/' "$1" | tail -n 1 | tr -dc 0-9; }

# one TAG RESUMPTION: one storm; appends a JSON line to $WORK/results.jsonl.
one() {
  local tag=$1 res=$2 dir=$WORK/$1 a b sim t0 t1 c0 c1 n
  mkdir -p "$dir"
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:0 TOKIO_WORKER_THREADS=1 \
    "$KUMO" broker --listen "127.0.0.1:$PORT" --node-id node-a >"$dir/node-a.log" 2>&1 &
  a=$!
  KUMO__BROKER__HTTP_LISTEN=127.0.0.1:0 TOKIO_WORKER_THREADS=1 \
    "$KUMO" broker --listen "127.0.0.1:$((PORT + 1))" --node-id node-b >"$dir/node-b.log" 2>&1 &
  b=$!
  sleep 2
  KUMO__SIM__TLS_RESUMPTION=$res KUMO__SIM__PROGRESS_INTERVAL_MS=100 TOKIO_WORKER_THREADS=1 \
    "$KUMO" sim --devices "$DEVICES" --nodes "127.0.0.1:$PORT,127.0.0.1:$((PORT + 1))" \
    --ramp 1500 --duration 120 >"$dir/sim.json" 2>"$dir/sim.err" &
  sim=$!
  for _ in $(seq 1 1200); do
    [[ $(connected "$dir/sim.err") -ge $DEVICES ]] 2>/dev/null && break
    sleep 0.1
  done
  sleep 5
  t0=$(date +%s.%N); c0=$(ticks "$b")
  kill -9 "$a"; wait "$a" 2>/dev/null
  # The devices notice at once (the kernel closes the sockets); wait for it.
  for _ in $(seq 1 100); do
    [[ $(connected "$dir/sim.err") -lt $DEVICES ]] 2>/dev/null && break
    sleep 0.05
  done
  for _ in $(seq 1 1200); do
    [[ $(connected "$dir/sim.err") -ge $DEVICES ]] 2>/dev/null && break
    sleep 0.05
  done
  t1=$(date +%s.%N); c1=$(ticks "$b")
  kill -INT "$sim"; wait "$sim" 2>/dev/null
  kill "$b"; wait "$b" 2>/dev/null
  python3 - "$dir/sim.json" "$tag" "$res" "$t0" "$t1" "$((c1 - c0))" >>"$WORK/results.jsonl" <<'PY'
import json, sys
path, tag, res, t0, t1, ticks = sys.argv[1:]
s = json.load(open(path))
print(json.dumps({"tag": tag, "resumption": res == "true", "back_s": float(t1) - float(t0),
                  "node_b_cpu_s": int(ticks) / 100, "connects": s["connects"],
                  "tls_resumed": s.get("tls_resumed", 0), "failed": sum(s["failures"].values()),
                  "sim_rss_per_device_b": s["rss_per_device_bytes"]}))
PY
}

for r in $(seq 1 "$ROUNDS"); do
  one "on-$r" true
  one "off-$r" false
done
python3 - "$WORK/results.jsonl" "$DEVICES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(res, k): return statistics.median(r[k] for r in rows if r["resumption"] == res)
print(f"reconnect storm: {int(sys.argv[2]) // 2} devices move from a killed node (medians of {len(rows) // 2} rounds)")
print(f"{'':34} {'resumption':>11} {'full':>9} {'ratio':>7}")
for label, k, fmt in [("back in (s)", "back_s", "{:.2f}"), ("node B CPU in the storm (s)", "node_b_cpu_s", "{:.2f}"),
                      ("resumed connects", "tls_resumed", "{:.0f}"), ("failed connects", "failed", "{:.0f}"),
                      ("simulator RSS per device (B)", "sim_rss_per_device_b", "{:.0f}")]:
    on, off = med(True, k), med(False, k)
    ratio = f"{on / off:.2f}" if off else "-"
    print(f"{label:34} {fmt.format(on):>11} {fmt.format(off):>9} {ratio:>7}")
PY
echo "raw: $WORK/results.jsonl"
