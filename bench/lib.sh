# Shell helpers shared by the benchmark scripts that run the whole stack
# (bench/soak/run.sh, bench/chaos/run.sh). Source it after setting ROOT and
# WORK; it defines functions only, plus KUMO, BENCH and PY defaults.
#
# Everything a script starts must be one of its background jobs: `bench_cleanup`
# (installed by `bench_traps`) stops exactly those on exit, never anything by name.

KUMO=${KUMO:-$ROOT/target/release/kumo}
BENCH=${BENCH:-$ROOT/target/release/kumo-bench}
VENV=${VENV:-$ROOT/target/fleet-venv}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# event NAME [DETAIL]: a timestamped line in WORK/events.csv (and the log).
event() { printf '%s,%s,%s\n' "$(date +%s.%N | cut -c1-14)" "$1" "${2:-}" >>"$WORK/events.csv"; log "$1 ${2:-}"; }

# need_tools: the release binaries and psql, or a message saying how to get them.
need_tools() {
  local bin
  for bin in "$KUMO" "$BENCH"; do
    [[ -x $bin ]] || { echo "missing $bin: cargo build --release -p kumo -p kumo-bench" >&2; exit 1; }
  done
  command -v psql >/dev/null || { echo "missing psql (PostgreSQL client)" >&2; exit 1; }
}

# need_free_ports PORT…: exits if any of them is listening already.
need_free_ports() {
  local filter="" p
  for p in "$@"; do filter+="${filter:+ or }sport = :$p"; done
  if ss -Hltn "( $filter )" | grep -q .; then
    echo "a port of $* is in use; set BASE_PORT" >&2
    exit 1
  fi
}

# wait_port PORT [TENTHS]: until something listens on PORT (default 30 s).
wait_port() {
  local _
  for _ in $(seq 1 "${2:-300}"); do
    ss -Hltn "( sport = :$1 )" | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# use_matplotlib: sets PY to a python3 with matplotlib (a venv in VENV if needed).
use_matplotlib() {
  PY=python3
  if ! python3 -c 'import matplotlib' 2>/dev/null; then
    if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
      log "installing matplotlib into $VENV"
      python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib >&2
    fi
    PY=$VENV/bin/python
  fi
}

# stop_pid PID [SIGNAL]: signal it (TERM) and wait up to 30 s, then SIGKILL.
stop_pid() {
  local i
  kill "-${2:-TERM}" "$1" 2>/dev/null || return 0
  for i in $(seq 1 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# bench_cleanup: stops this script's background jobs (TERM, then KILL after 30 s).
bench_cleanup() {
  local pids i
  pids=$(jobs -p)
  [[ -z $pids ]] && return 0
  kill $pids 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 $pids 2>/dev/null || break
    sleep 0.2
  done
  kill -9 $pids 2>/dev/null || true
}
bench_traps() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# bench_lock FILE NAME: with FILE set, waits until it is absent, then holds it
# (its content: NAME) until the script exits — a machine-wide "heavy run in
# progress" flag that benchmarks sharing a machine respect. Installs the
# traps of bench_traps, which also remove the lock. Without FILE, just the traps.
BENCH_LOCK_HELD=
bench_lock() {
  trap 'bench_cleanup; [[ -n $BENCH_LOCK_HELD ]] && rm -f "$BENCH_LOCK_HELD"; true' EXIT
  trap 'exit 130' INT TERM
  [[ -n ${1:-} ]] || return 0
  while [[ -e $1 ]]; do log "waiting for $1 ($(cat "$1" 2>/dev/null))"; sleep 30; done
  echo "$2" >"$1"
  BENCH_LOCK_HELD=$1
}

# bench_finish REPORT: the end of a run — the Python REPORT reads WORK (its
# output also goes to WORK/results.md), WORK/data goes unless KEEP_DATA=1, and
# the script exits with the report's status (non-zero: a goal was missed).
bench_finish() {
  local status
  set +e
  python3 "$1" "$WORK" | tee "$WORK/results.md"
  status=${PIPESTATUS[0]}
  set -e
  [[ ${KEEP_DATA:-0} == 1 ]] || rm -rf "$WORK/data"
  log "done; load $(cut -d' ' -f1-3 /proc/loadavg); raw files in $WORK"
  exit "$status"
}

# The simulator's last progress line's counter NAME (connected, drops, failed) from FILE.
sim_field() { { tail -c 4096 "$2" 2>/dev/null | grep -o "$1 [0-9]*" | tail -n 1 | tr -dc 0-9; } || true; }

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# wait_up FILE PID: until `kumo up` (or a bridge) printed its ready line, or exit.
wait_up() {
  local _
  for _ in $(seq 1 900); do
    grep -q 'Kumo is up' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited before it was up" >&2; return 1; }
    sleep 0.1
  done
  echo "not up in 90 s ($1)" >&2
  return 1
}

# register_fleet DEVICES BRIDGE_URL NAME: one user owning sim-000000 …
# sim-(DEVICES-1), each with a LIGHT appliance (one made through the API, the
# others copied in SQL). Needs sql() and KUMO's environment; sets TOKEN and
# FLEET_USER.
register_fleet() {
  local devices=$1 url=$2 name=$3 first
  FLEET_USER=$("$KUMO" users create --nickname "$name" | awk '{ print $3; exit }')
  TOKEN=$("$KUMO" tokens create --user "$FLEET_USER" --scope basic --scope sendir 2>/dev/null | tail -n 1 | tr -d '[:space:]')
  "$KUMO" devices add sim-000000 --user "$FLEET_USER" --no-cert >/dev/null
  sql "INSERT INTO devices (id, user_id, name)
       SELECT format('sim-%s', lpad(i::text, 6, '0')), '$FLEET_USER', '$name'
       FROM generate_series(1, $devices - 1) AS i ON CONFLICT (id) DO NOTHING"
  first=$(curl -sf -X POST "$url/1/appliances" \
    -H "Authorization: Bearer $TOKEN" \
    --data 'nickname=Light&image=ico_light&device=sim-000000&model=kumo-light-generic&model_type=LIGHT' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  sql "INSERT INTO appliances (id, user_id, device_id, type, nickname, image, model_id, position, settings, state)
       SELECT gen_random_uuid()::text, a.user_id, d.id, a.type, a.nickname, a.image, a.model_id,
              a.position, a.settings, a.state
       FROM appliances a, devices d
       WHERE a.id = '$first' AND d.user_id = '$FLEET_USER' AND d.id <> a.device_id"
}
