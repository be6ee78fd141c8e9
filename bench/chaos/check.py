#!/usr/bin/env python3
"""The chaos ledger check: compares what the tools recorded as accepted with
what Kumo's database holds, and exits 1 on any discrepancy.

Usage: check.py WORK [all|commands|readings|presence]   (default all)

Inputs in WORK:
- db_url: the PostgreSQL URL;
- commands.csv (`kumo-bench commands --samples`): `command_id` of every
  command the API accepted (returned `X-Kumo-Command-Id`);
- ledger/readings-*.csv (`kumo sim`, `sim.ledger_dir`): `device_id,ts_ms,sensors`
  of every QoS 1 sensor report a node acknowledged with a PUBACK;
- ledger/sessions-*.csv: `unix_ms,device_id,up|down` of every session.

Checks:
- commands: every accepted id has a row, and every row the API accepted is
  final (acked, failed or expired); a row still queued or sent is a
  discrepancy (stuck past its TTL when its expiry passed). Rows in the table
  that are still open past their expiry also count, ledger or not.
- readings: every sensor value of every acknowledged report is stored
  exactly once (device, sensor, time in ms): 0 rows = lost, 2+ = duplicate;
  any (device, sensor, time) stored twice anywhere is a duplicate too.
- presence: `devices.online` of every sim device equals the state its last
  session line gives (up = online); retried for up to PRESENCE_WAIT s (30)
  so presence still in flight can land.
"""

import csv
import glob
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict

WORK = sys.argv[1]
WHAT = sys.argv[2] if len(sys.argv) > 2 else "all"
DB_URL = open(f"{WORK}/db_url").read().strip()
PRESENCE_WAIT = float(os.environ.get("PRESENCE_WAIT", "30"))
SHOW = 8  # examples printed per kind of discrepancy


def query(sql):
    """Rows of a query as lists of strings (COPY … TO STDOUT, CSV)."""
    out = subprocess.run(
        ["psql", DB_URL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
         f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"],
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(f"query failed: {out.stderr.strip()}")
    return list(csv.reader(out.stdout.splitlines()))


def report(name, problems, lines):
    for line in lines:
        print(f"  {line}")
    if problems:
        print(f"FAIL {name}: {sum(len(v) for v in problems.values())} discrepancies")
        for kind, items in problems.items():
            if items:
                print(f"  {kind}: {len(items)}, e.g. {', '.join(map(str, items[:SHOW]))}")
        return False
    print(f"PASS {name}")
    return True


def check_commands():
    accepted = set()
    not_accepted = Counter()
    with open(f"{WORK}/commands.csv") as f:
        for r in csv.DictReader(f):
            if r.get("command_id"):
                accepted.add(r["command_id"])
            else:
                not_accepted[r["outcome"]] += 1
    rows = {r[0]: (r[1], r[2] == "t") for r in query(
        "SELECT id, status, expires_at <= now() FROM commands")}
    problems = defaultdict(list)
    for cid in sorted(accepted):
        if cid not in rows:
            problems["accepted but no record"].append(cid)
        elif rows[cid][0] in ("queued", "sent"):
            kind = "stuck past TTL" if rows[cid][1] else "not final yet (TTL not passed)"
            problems[f"{kind} ({rows[cid][0]})"].append(cid)
    for cid, (status, past) in rows.items():
        if cid not in accepted and status in ("queued", "sent") and past:
            problems[f"not in the ledger, stuck past TTL ({status})"].append(cid)
    statuses = Counter(rows[c][0] for c in accepted if c in rows)
    all_statuses = Counter(s for s, _ in rows.values())
    lines = [
        f"accepted (id returned): {len(accepted):,}; their states: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())),
        "requests without an id (not accepted, or the answer was lost): "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(not_accepted.items())) or "none"),
        f"all rows in commands: {len(rows):,} ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(all_statuses.items())) + ")",
    ]
    return report("commands", problems, lines)


def check_readings():
    expected = []  # (device, sensor, ts_ms)
    reports = 0
    for path in sorted(glob.glob(f"{WORK}/ledger/readings-*.csv")):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(",")
                if len(parts) != 3:
                    continue  # a line cut short by an abrupt end
                device, ts, sensors = parts
                reports += 1
                for s in sensors.split():
                    expected.append((device, s, int(ts)))
    stored = Counter()
    for device, sensor, ms, n in query(
        "SELECT device_id, sensor, round(extract(epoch FROM at) * 1000)::bigint, count(*) "
        "FROM readings GROUP BY 1, 2, 3"
    ):
        stored[(device, sensor, int(ms))] = int(n)
    problems = defaultdict(list)
    once = 0
    for key in expected:
        n = stored.get(key, 0)
        if n == 0:
            problems["acknowledged, lost"].append("/".join(map(str, key)))
        elif n > 1:
            problems["acknowledged, stored more than once"].append(f"{'/'.join(map(str, key))}×{n}")
        else:
            once += 1
    wanted = set(expected)
    for key, n in stored.items():
        if n > 1 and key not in wanted:
            problems["stored more than once (not in the ledger)"].append(f"{'/'.join(map(str, key))}×{n}")
    unconfirmed = sum(1 for k in stored if k not in wanted)
    lines = [
        f"acknowledged reports in the ledger: {reports:,} ({len(expected):,} sensor values)",
        f"stored exactly once: {once:,}",
        f"rows in readings: {sum(stored.values()):,}; values stored whose PUBACK the device "
        f"never saw (connection lost first; allowed): {unconfirmed:,}",
    ]
    return report("readings", problems, lines)


def sessions():
    """Each device's last session event and its time (ms)."""
    last = {}
    for path in glob.glob(f"{WORK}/ledger/sessions-*.csv"):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(",")
                if len(parts) != 3:
                    continue
                ms, device, event = int(parts[0]), parts[1], parts[2]
                if device not in last or ms >= last[device][1]:
                    last[device] = (event, ms)
    return last


def check_presence():
    deadline = time.time() + PRESENCE_WAIT
    while True:
        last = sessions()
        online = {r[0]: r[1] == "t" for r in query("SELECT id, online FROM devices WHERE id LIKE 'sim-%'")}
        problems = defaultdict(list)
        for device, is_online in sorted(online.items()):
            want = last.get(device, ("down", 0))[0] == "up"
            if want and not is_online:
                problems["connected (sim) but shown offline"].append(device)
            elif is_online and not want:
                problems["disconnected (sim) but shown online"].append(device)
        for device in sorted(set(last) - set(online)):
            problems["in the sim's log but not a registered device"].append(device)
        if not problems or time.time() >= deadline:
            break
        time.sleep(2)
    up = sum(1 for e, _ in last.values() if e == "up")
    lines = [
        f"devices: {len(online):,}; connected by the sim's session log: {up:,}; "
        f"shown online: {sum(online.values()):,}",
    ]
    return report("presence", problems, lines)


CHECKS = {"commands": check_commands, "readings": check_readings, "presence": check_presence}
names = list(CHECKS) if WHAT == "all" else [WHAT]
ok = True
for name in names:
    print(f"## {name}")
    ok = CHECKS[name]() and ok
sys.exit(0 if ok else 1)
