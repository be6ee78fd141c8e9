#!/usr/bin/env python3
"""Figures and plots of one bench/fleet/run.sh run.

Usage: report.py WORK     (prints markdown; writes WORK/fleet.png, WORK/mosquitto.png)

Inputs in WORK: params.env, events.csv (`unix_s,event,detail`), {kumo,mosquitto}-samples.csv
(sample.py), {kumo,mosquitto}-summary.json (`kumo sim`), commands.csv
(`kumo-bench commands --samples`), tap.csv (`kumo-bench tap`).
"""

import csv
import json
import math
import os
import sys

WORK = sys.argv[1]
CORES = os.cpu_count() or 1
GROUPS = ["nodes", "bridge", "postgres", "sim", "tools"]


def load_csv(name):
    try:
        with open(f"{WORK}/{name}") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_json(name):
    """A whole JSON document (the sim's summary), or the last line of a JSON-lines file."""
    try:
        with open(f"{WORK}/{name}") as f:
            text = f.read().strip()
    except OSError:
        return {}
    for candidate in (text, (text.splitlines() or [""])[-1]):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    return {}


params = {}
for tok in open(f"{WORK}/params.env").read().split():
    k, _, v = tok.partition("=")
    params[k] = v
DEVICES = int(params["DEVICES"])
NODES = int(params["NODES"])

events = []  # (t, name, detail, phase)
phase = "kumo"
with open(f"{WORK}/events.csv") as f:
    for line in f:
        t, name, detail = (line.rstrip("\n").split(",", 2) + [""])[:3]
        if name == "ramp_start":
            phase = detail
        events.append((float(t), name, detail, phase))


def ev(name, ph="kumo"):
    return next((e for e in events if e[1] == name and e[3] == ph), None)


def pct(vals, p):
    if not vals:
        return None
    vals = sorted(vals)
    return vals[min(len(vals), max(1, math.ceil(p * len(vals)))) - 1]


def fmt(v, f="{:,.0f}"):
    return "–" if v is None else f.format(v)


def at(samples, t, col):
    """The last value of col at or before t."""
    best = None
    for r in samples:
        if float(r["unix_s"]) > t:
            break
        v = num(r.get(col))
        if v is not None:
            best = v
    return best


def cpu_pct(samples, t0, t1, col):
    """CPU of a group between t0 and t1, % of all cores."""
    inside = [r for r in samples if t0 <= float(r["unix_s"]) <= t1 and num(r.get(col)) is not None]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[-1]
    dt = float(b["unix_s"]) - float(a["unix_s"])
    # A process that exits (a killed node) lowers the sum; count only growth.
    grow = 0.0
    for x, y in zip(inside, inside[1:]):
        grow += max(0.0, float(y[col]) - float(x[col]))
    return 100 * grow / dt / CORES if dt > 0 else None


def cpu_secs(samples, t0, t1, col):
    inside = [r for r in samples if t0 <= float(r["unix_s"]) <= t1 and num(r.get(col)) is not None]
    return sum(max(0.0, float(y[col]) - float(x[col])) for x, y in zip(inside, inside[1:]))


out = []
p = out.append

# ------------------------------------------------------------------ Kumo
ks = load_csv("kumo-samples.csv")
ksum = load_json("kumo-summary.json")
r0, h0, h1 = ev("ramp_start"), ev("hold_start"), ev("hold_end")
kill, cmd0, drained = ev("kill"), ev("cmd_start"), ev("drained")
t_r0 = r0[0] if r0 else float(ks[0]["unix_s"])
node_names = [c[len("sessions_"):] for c in (ks[0].keys() if ks else []) if c.startswith("sessions_node")]
# Sessions that are not devices (bridge, tap, peer links), before the sim started.
pre = [r for r in ks if float(r["unix_s"]) <= t_r0] or ks[:1]
base = {n: num(pre[-1][f"sessions_{n}"]) or 0 for n in node_names} if ks else {}
KILLED = f"node-{params.get('KILL_NODE')}"


def device_sessions(r):
    """Device sessions over all nodes: sessions less the bridge's, the tap's and
    the peer links (counted before the ramp; a dead node's link to each
    survivor is gone). None when a live node did not answer."""
    total = 0.0
    for n in node_names:
        v = num(r[f"sessions_{n}"])
        if v is None:
            return None
        if v == 0:
            continue
        dead_peer = 1 if (n != KILLED and num(r.get(f"sessions_{KILLED}")) == 0 and kill_t is not None
                          and float(r["unix_s"]) > kill_t) else 0
        total += max(0.0, v - (base[n] - dead_peer))
    return total


kill_t = ev("kill")[0] if ev("kill") else None
for r in ks:
    d = device_sessions(r)
    r["device_sessions"] = "" if d is None else str(d)

p(f"## Fleet run: {DEVICES:,} devices, {NODES} Kumo nodes\n")
p("Parameters: " + " ".join(f"{k}={v}" for k, v in params.items()) + "\n")

sim_conn = [(float(r["unix_s"]), num(r["sim_connected"])) for r in ks if num(r["sim_connected"]) is not None]
peak_sim = max((c for _, c in sim_conn), default=None)
peak_nodes = max((v for v in (num(r["device_sessions"]) for r in ks) if v is not None), default=None)
ramp_secs = ksum.get("ramp_secs")
steady = at(ks, h1[0], "sim_connected") if h1 else None
drops0 = at(ks, h0[0], "sim_drops") if h0 else None
drops1 = at(ks, h1[0], "sim_drops") if h1 else None

killed_devices = back_secs = pre_kill = back_nodes = online_min = None
if kill:
    k_node = f"node-{params.get('KILL_NODE')}"
    words = kill[2].split()
    detail = {k: v for k, v in zip(words, words[1:]) if k in ("pid", "sessions", "sim_connected")}
    # The node's last known count (a sample it was too busy to answer is empty).
    last_known = at(ks, kill[0] - 0.01, f"sessions_{k_node}")
    if last_known is not None:
        killed_devices = last_known - base.get(k_node, 0)
    pre_kill = num(detail.get("sim_connected")) or at(ks, kill[0] - 0.01, "sim_connected")
    # Back = the simulator's count, having dipped after the kill, is at its
    # pre-kill value again (its progress line lags by up to a period). A fleet
    # that reconnects within one progress period shows no dip: its drops
    # counter rising stands for it.
    dipped = False
    drops_at_kill = at(ks, kill[0] - 0.01, "sim_drops")
    for r in ks:
        t, c, d = float(r["unix_s"]), num(r["sim_connected"]), num(r["sim_drops"])
        if t <= kill[0] or c is None or pre_kill is None:
            continue
        dipped = dipped or c < pre_kill or (None not in (d, drops_at_kill) and d > drops_at_kill)
        if dipped and c >= pre_kill:
            back_secs = t - kill[0]
            break
    # The nodes' view: device sessions over the live nodes back at the count
    # before the kill (their metrics are read at once, without the lag).
    back_nodes = None
    pre_nodes = at(ks, kill[0] - 0.01, "device_sessions")
    for r in ks:
        t, c = float(r["unix_s"]), num(r["device_sessions"])
        if t > kill[0] and c is not None and pre_nodes and c >= pre_nodes:
            back_nodes = t - kill[0]
            break
    online_min = min((num(r["online_rows"]) for r in ks
                      if kill[0] <= float(r["unix_s"]) <= (h1[0] if h1 else 1e18) and num(r["online_rows"]) is not None),
                     default=None)
hold_drops = (drops1 - drops0) if drops0 is not None and drops1 is not None else None

def tap_total(name):
    last = {}
    for r in load_csv(name):
        last[r["node"]] = r
    return sum(int(r["sensor_readings"]) + int(r["meter_readings"]) for r in last.values())


published = tap_total("kumo-tap.csv")


def tap_rate(name, t0, t1):
    """Readings the nodes accepted per device per minute between t0 and t1."""
    per_t = {}
    for r in load_csv(name):
        per_t.setdefault(r["unix_s"], 0)
        per_t[r["unix_s"]] += int(r["sensor_readings"]) + int(r["meter_readings"])
    pts = sorted((float(t), v) for t, v in per_t.items() if t0 <= float(t) <= t1)
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) * 60 / DEVICES
stored = int(drained[2].split()[1]) if drained else None
online_end = None
if h1:
    parts = h1[2].split()
    online_end = num(parts[parts.index("online") + 1]) if "online" in parts else None

rows = []
rows.append(("peak connected (simulator / nodes' device sessions)", f"{fmt(peak_sim)} / {fmt(peak_nodes)}"))
rows.append(("steady connected at the end of the hold (simulator)", fmt(steady)))
def slope(samples, lo_frac, hi_frac):
    """Devices/s between the first samples at lo_frac and hi_frac of DEVICES connected."""
    t_lo = t_hi = None
    for r in samples:
        c = num(r.get("sim_connected"))
        if c is None:
            continue
        if t_lo is None and c >= lo_frac * DEVICES:
            t_lo, c_lo = float(r["unix_s"]), c
        if t_lo is not None and c >= hi_frac * DEVICES:
            t_hi, c_hi = float(r["unix_s"]), c
            break
    return (c_hi - c_lo) / (t_hi - t_lo) if t_lo and t_hi and t_hi > t_lo else None


rows.append(("time to all connected", f"{fmt(ramp_secs, '{:.1f}')} s" + (f" ({DEVICES / ramp_secs:,.0f}/s)" if ramp_secs else " (not all)")))
rows.append(("ramp rate between 10 % and 90 % connected (asked: " + params.get("RAMP", "?") + "/s)", f"{fmt(slope(ks, .1, .9))}/s"))
rows.append(("failed after backoff (devices not connected at the end of the hold)", fmt(DEVICES - steady if steady is not None else None)))
fails = ksum.get("failures", {})
rows.append(("failed connection attempts (retried; by reason)", f"{sum(fails.values()):,} {fails if fails else ''}".strip()))
drop_reasons = ksum.get("drop_reasons", {})
rows.append(("connected devices dropped, whole run (by why the simulator's link ended)",
             f"{ksum.get('drops', 0):,} {drop_reasons if drop_reasons else ''}".strip()))
# Drops outside the kill's storm: before the kill, and after the killed
# node's devices were all back. (All drops less the killed node's sessions
# came out negative: the node counted sessions the simulator had not yet
# seen acknowledged.)
outside_storm = None
if kill and back_secs is not None and drops0 is not None and drops1 is not None:
    d_kill = at(ks, kill[0] - 0.01, "sim_drops")
    d_back = at(ks, kill[0] + back_secs, "sim_drops")
    if d_kill is not None and d_back is not None:
        outside_storm = (d_kill - drops0) + (drops1 - d_back)


def reasons_at(t):
    """The nodes' ended sessions by reason at t ({} before the column existed)."""
    last = {}
    for r in ks:
        if float(r["unix_s"]) > t:
            break
        if r.get("node_disconnects"):
            last = dict((k, float(v)) for k, v in (kv.split("=") for kv in r["node_disconnects"].split(";")))
    return last


if ks and "node_dropped" in ks[0]:
    rows.append(("messages the nodes dropped (full client queue or kept session's cap), whole run",
                 fmt(max((num(r.get("node_dropped")) or 0) for r in ks))))
if "stall_max_ms" in ksum:
    rows.append(("simulator starved: report ticks run ≥ 10 s late / latest tick / longest a woken timer waited",
                 f"{ksum.get('late_reports', 0):,} / {ksum.get('report_late_max_ms', 0) / 1000:.1f} s / {ksum['stall_max_ms'] / 1000:.1f} s"))
if ks and "node_disconnects" in ks[0] and h0:
    ended = reasons_at(h0[0])
    rows.append(("sessions the nodes ended before the hold (by reason)",
                 ", ".join(f"{k} {v:,.0f}" for k, v in sorted(ended.items(), key=lambda kv: -kv[1])) or "none"))
rows.append(("drops during the hold (all / outside the kill: before it and after its devices were back)",
             f"{fmt(hold_drops)} / {fmt(outside_storm if kill else hold_drops)}"))
rows.append(("readings published (accepted by the nodes: tap) vs stored (rows)",
             f"{published:,} vs {fmt(stored)}" + (f" ({stored - published:+,})" if stored is not None else "")))
if "resent" in ksum:
    rows.append(("telemetry the devices sent again after a reconnect, unacknowledged before (simulator)",
                 f"{ksum['resent']:,}"))
if os.path.exists(f"{WORK}/ledger-readings.txt"):
    # bench/chaos/check.py against the simulator's ledger, after the drain.
    ledger = [l.strip() for l in open(f"{WORK}/ledger-readings.txt") if l.strip()]
    rows.append(("ledger: every reading a node acknowledged stored exactly once (bench/chaos/check.py)",
                 "; ".join(ledger)))
rows.append(("presence rows online vs connected, end of hold", f"{fmt(online_end)} vs {fmt(steady)}"))

cmds = load_csv("commands.csv")
cres = load_json("commands.json")
storm = None
if kill:
    storm = (kill[0], kill[0] + (back_secs if back_secs is not None else 1e9) + 5)


def window(rows_, lo, hi, inside=True):
    sel = [r for r in rows_ if (lo <= float(r["unix_s"]) < hi) == inside]
    acked = [float(r["latency_ms"]) for r in sel if r["outcome"] == "acked"]
    return sel, acked


# The node a device was on at the kill: device i starts on node (i mod NODES) + 1
# and stays there unless a connection attempt failed (then it moves to a
# random other node), so this holds while no attempt failed before the kill.
device_of = {}
try:
    for line in open(f"{WORK}/appliance-devices.txt"):
        a, _, d = line.strip().partition("|")
        device_of[a] = d
except OSError:
    pass


def on_killed_node(r):
    return on_device_killed(device_of.get(r.get("appliance", ""), ""))


def on_device_killed(d):
    try:
        return int(d.rsplit("-", 1)[1]) % NODES == int(params.get("KILL_NODE", 0)) - 1
    except (IndexError, ValueError):
        return False


if cmds:
    lo, hi = storm if storm else (0, 0)
    hold_sel, hold_acked = window(cmds, lo, hi, inside=False)
    st_sel, st_acked = window(cmds, lo, hi, inside=True)
    rows.append(("commands sent / acked (whole hold)",
                 f"{len(cmds):,} / {sum(r['outcome'] == 'acked' for r in cmds):,}"))
    rows.append(("command p50 / p99 during the hold (outside the storm), ms",
                 f"{fmt(pct(hold_acked, .5), '{:.1f}')} / {fmt(pct(hold_acked, .99), '{:.1f}')} ({len(hold_acked):,} of {len(hold_sel):,} acked)"))
    if storm:
        rows.append(("command p50 / p99 during the storm (kill → all back + 5 s), ms",
                     f"{fmt(pct(st_acked, .5), '{:.1f}')} / {fmt(pct(st_acked, .99), '{:.1f}')} ({len(st_acked):,} of {len(st_sel):,} acked)"))
        if device_of:
            for label, pick in (("devices of the killed node", True), ("devices on the other nodes", False)):
                sel = [r for r in st_sel if on_killed_node(r) == pick]
                acked = [float(r["latency_ms"]) for r in sel if r["outcome"] == "acked"]
                rows.append((f"  storm, {label}: p50 / p99, ms",
                             f"{fmt(pct(acked, .5), '{:.1f}')} / {fmt(pct(acked, .99), '{:.1f}')} ({len(acked):,} of {len(sel):,} acked within the 5 s wait)"))
    # Where the time went, from the command rows (created = the REST
    # transaction, sent = the node's PUBACK to the bridge (the last send),
    # completed = the device's ack stored).
    crow = load_csv("command-rows.csv")
    if crow:
        def stages(lo_, hi_, inside):
            sel = [r for r in crow if num(r["created"]) and (lo_ <= float(r["created"]) < hi_) == inside
                   and (cmd0 is None or float(r["created"]) >= cmd0[0] - 1)]
            cs = [1000 * (float(r["sent"]) - float(r["created"])) for r in sel if num(r["sent"]) is not None]
            sc = [1000 * (float(r["completed"]) - float(r["sent"])) for r in sel
                  if num(r["sent"]) is not None and num(r["completed"]) is not None]
            cc = [1000 * (float(r["completed"]) - float(r["created"])) for r in sel
                  if num(r["completed"]) is not None]
            resent = sum(1 for r in sel if (num(r["attempts"]) or 0) > 1)
            return (f"created → ack stored {fmt(pct(cc, .5), '{:.1f}')} / {fmt(pct(cc, .99), '{:.1f}')}: "
                    f"created → sent {fmt(pct(cs, .5), '{:.1f}')} / {fmt(pct(cs, .99), '{:.1f}')}, "
                    f"sent → ack stored {fmt(pct(sc, .5), '{:.1f}')} / {fmt(pct(sc, .99), '{:.1f}')} "
                    f"({len(sel):,} rows, {resent:,} sent more than once)")
        rows.append(("command stages p50 / p99 (ms), hold", stages(lo, hi, False)))
        if storm:
            rows.append(("command stages p50 / p99 (ms), storm", stages(lo, hi, True)))
            if crow and "device_id" in crow[0]:
                every = crow
                for label, pick in (("devices of the killed node", True), ("devices on the other nodes", False)):
                    crow = [r for r in every if on_device_killed(r["device_id"]) == pick]
                    rows.append((f"  storm stages, {label}", stages(lo, hi, True)))
                crow = every
    # A hold command as the client saw it, by step: each client record joined
    # to its row (per device, in order): scheduled → created (HTTP, token,
    # appliance, insert), created → ack stored (`now()` of the ack's
    # transaction), ack stored → the client's answer (the rest of that
    # transaction, the wake-up, the HTTP response).
    if crow and device_of and "device_id" in crow[0]:
        rows_of = {}
        for r in crow:
            if num(r["created"]) is not None:
                rows_of.setdefault(r["device_id"], []).append(r)
        asked = {}
        for r in cmds:
            asked.setdefault(device_of.get(r.get("appliance", "")), []).append(r)
        steps = ([], [], [])
        for d, cs in asked.items():
            rs = sorted(rows_of.get(d, []), key=lambda r: float(r["created"]))
            if d is None or len(rs) != len(cs):
                continue
            for c, r in zip(sorted(cs, key=lambda r: float(r["unix_s"])), rs):
                t = float(c["unix_s"])
                if c["outcome"] != "acked" or num(r["completed"]) is None or lo <= t < hi:
                    continue
                steps[0].append(1000 * (float(r["created"]) - t))
                steps[1].append(1000 * (float(r["completed"]) - float(r["created"])))
                steps[2].append(t * 1000 + float(c["latency_ms"]) - 1000 * float(r["completed"]))
        if steps[0]:
            p5099 = [f"{fmt(pct(v, .5), '{:.0f}')} / {fmt(pct(v, .99), '{:.0f}')}" for v in steps]
            rows.append(("hold commands by step as the client saw them, p50 / p99 (ms)",
                         f"scheduled → created {p5099[0]}, created → ack stored {p5099[1]}, "
                         f"ack stored → answer {p5099[2]} ({len(steps[0]):,} commands)"))
    bad = {}
    for r in cmds:
        if r["outcome"] != "acked":
            bad[r["outcome"]] = bad.get(r["outcome"], 0) + 1
    if bad:
        rows.append(("commands not acked, by outcome", str(bad)))
if kill:
    rows.append(("killed node's devices", fmt(killed_devices)))
    rows.append(("time until the killed node's devices are all back (simulator's view / nodes' sessions)",
                 (f"{fmt(back_secs, '{:.1f}')} s" if back_secs is not None else "never (within the hold)")
                 + f" / {fmt(back_nodes, '{:.1f}')} s"))
    rows.append(("presence rows online, lowest from the kill to the end of the hold", fmt(online_min)))

# Memory per connection of every node, just before the kill (all alive).
t_mem = (kill[0] - 0.01) if kill else (h1[0] if h1 else None)
per_conn = []
if t_mem:
    for n in node_names:
        rss, s = at(ks, t_mem, f"rss_kib_{n}"), at(ks, t_mem, f"sessions_{n}")
        if rss and s:
            per_conn.append(rss * 1024 / s)

def rss_growth(samples, names, t_before, t_at, bases):
    """Per node: (RSS at t_at − RSS at t_before) / device sessions at t_at, bytes."""
    out_ = []
    for n in names:
        r0_, r1_ = at(samples, t_before, f"rss_kib_{n}"), at(samples, t_at, f"rss_kib_{n}")
        s_ = (at(samples, t_at, f"sessions_{n}") or 0) - bases.get(n, 0)
        if r0_ and r1_ and s_ > 0:
            out_.append((r1_ - r0_) * 1024 / s_)
    return out_


def spread(v):
    return f"{min(v) / 1024:.1f} / {sum(v) / len(v) / 1024:.1f} / {max(v) / 1024:.1f} KiB"


per_growth = rss_growth(ks, node_names, t_r0, t_mem, base) if t_mem else []
if per_conn:
    rows.append(("node RSS per connection (whole RSS / sessions), min / mean / max", spread(per_conn)))
if per_growth:
    rows.append(("node RSS growth per device session (since before the ramp), min / mean / max", spread(per_growth)))
if ksum.get("devices"):
    rows.append(("simulator RSS per device", f"{ksum['rss_per_device_bytes'] / 1024:.1f} KiB"))
    rows.append(("simulator CPU per device (whole run)", f"{1000 * ksum['cpu_secs'] / ksum['devices']:.2f} ms over {ksum['elapsed_secs']:.0f} s"))
    if r0 and h0:
        ramp_cpu = cpu_secs(ks, r0[0], h0[0], "cpu_sim")
        rows.append(("simulator CPU per device connection (ramp)", f"{1000 * ramp_cpu / DEVICES:.2f} ms"))
    if h0 and h1:
        hold_cpu = cpu_secs(ks, h0[0], h1[0], "cpu_sim")
        rows.append(("simulator CPU per device per minute of hold", f"{60_000 * hold_cpu / DEVICES / (h1[0] - h0[0]):.3f} ms"))

p("| figure | value |\n|---|---|")
for k, v in rows:
    p(f"| {k} | {v} |")
p("")
if r0 and h0 and h1:
    p("CPU, % of the machine's " + str(CORES) + " cores (mean over the period):\n")
    p("| period | " + " | ".join(GROUPS) + " | total | whole machine (other jobs included) | of it: interrupts (irq + softirq) / stolen |\n|---" * 1 + "|---" * (len(GROUPS) + 3) + "|")
    periods = [("ramp", r0[0], h0[0]), ("hold before the kill", h0[0], kill[0] if kill else h1[0])]
    if kill:
        periods.append(("storm (kill → back + 5 s)", storm[0], min(storm[1], h1[0])))
        periods.append(("hold after the storm", min(storm[1], h1[0]), h1[0]))
    for name, a, b in periods:
        vals = [cpu_pct(ks, a, b, f"cpu_{g}") for g in GROUPS]
        tot = sum(v for v in vals if v is not None)
        p(f"| {name} ({b - a:.0f} s) | " + " | ".join(fmt(v, "{:.0f} %") for v in vals)
          + f" | {tot:.0f} % | {fmt(cpu_pct(ks, a, b, 'cpu_machine'), '{:.0f} %')}"
          + f" | {fmt(cpu_pct(ks, a, b, 'cpu_machine_irq'), '{:.0f} %')} / {fmt(cpu_pct(ks, a, b, 'cpu_machine_steal'), '{:.0f} %')} |")
    p("")
    per = {g: 1000 * cpu_secs(ks, r0[0], h0[0], f"cpu_{g}") / DEVICES for g in GROUPS}
    p("CPU per device connected during the ramp (CPU seconds of the ramp / devices): "
      + ", ".join(f"{g} {v:.2f} ms" for g, v in per.items())
      + f"; together {sum(per.values()):.2f} ms, so {CORES} cores connect at most "
      + f"~{CORES * 1000 / sum(per.values()):,.0f} devices/s with nothing else running.\n")
    rss = {g: at(ks, h1[0], f"rss_kib_{g}") for g in GROUPS}
    p("RSS at the end of the hold: " + ", ".join(f"{g} {v / 1024:,.0f} MiB" for g, v in rss.items() if v) + "\n")
    if ks and "bridge_mqtt_unacknowledged" in ks[0]:
        # The bridge's control path: device reports (state, presence, acks)
        # committed, and QoS 1 messages it has not acknowledged yet — which
        # the nodes' end-to-end acknowledgement waits for.
        p("The bridge's device reports and acknowledgements per period (from its /metrics every "
          "ONLINE_SAMPLE_SECS; confirmation timeouts: the nodes' `kumo_broker_confirm_timeouts_total`):\n")
        p("| period | reports stored per s | commit time per transaction | most QoS 1 messages unacknowledged "
          "| confirmation timeouts | tasks waiting for a database connection (mean / most) |\n"
          "|---|---|---|---|---|---|")
        for name, a, b in periods:
            def diff(col):
                x, y = at(ks, a, col), at(ks, b, col)
                return None if x is None or y is None else y - x
            stored, batches, secs = (diff("bridge_reports_stored_total"), diff("bridge_report_batches_total"),
                                     diff("bridge_report_batch_seconds_total"))
            unacked = [num(r.get("bridge_mqtt_unacknowledged")) for r in ks if a <= float(r["unix_s"]) < b]
            unacked = [u for u in unacked if u is not None]
            waiting = [num(r.get("bridge_db_pool_waiting")) for r in ks if a <= float(r["unix_s"]) < b]
            waiting = [w for w in waiting if w is not None]
            pool = (f"{sum(waiting) / len(waiting):.1f} / {max(waiting):.0f}" if waiting else "–")
            api = [num(r.get("bridge_api_db_pool_waiting")) for r in ks if a <= float(r["unix_s"]) < b]
            api = [w for w in api if w is not None]
            if api:
                pool += f" (REST API's pool: {sum(api) / len(api):.1f} / {max(api):.0f})"
            p(f"| {name} | {fmt(None if stored is None else stored / max(b - a, 1e-9))} "
              f"| {fmt(None if not batches else 1000 * secs / batches, '{:.0f} ms')} "
              f"| {fmt(max(unacked) if unacked else None)} | {fmt(diff('confirm_timeouts'))} | {pool} |")
        p("")
    if ks and "bridge_readings_stored_total" in ks[0]:
        # The reading writer (one task, one insert at a time) and each lane's
        # acknowledgements, which the bridge sends in arrival order once what
        # a message carried is durable: the nodes release a device's PUBACK
        # only then, and send the bridge at most its receive window beyond.
        p("The bridge's reading writer and acknowledgements per period (from its /metrics every "
          "ONLINE_SAMPLE_SECS; writer busy = insert time incl. waiting for a connection / period; "
          "ack wait = mean time from a QoS 1 message's arrival at the bridge to its acknowledgement):\n")
        p("| period | readings stored per s | readings per insert | writer busy | inserts with repeats "
          "| data lane: most unacknowledged | ack wait data / control |\n|---|---|---|---|---|---|---|")
        for name, a, b in periods:
            def diff(col):
                x, y = at(ks, a, col), at(ks, b, col)
                return None if x is None or y is None else y - x

            def mean_wait(lane):
                n, secs = diff(f"bridge_mqtt_acknowledged_total_{lane}"), diff(f"bridge_mqtt_ack_wait_seconds_total_{lane}")
                return fmt(None if not n else 1000 * secs / n, "{:,.0f} ms")
            stored, batches = diff("bridge_readings_stored_total"), diff("bridge_reading_batches_total")
            busy, repeats = diff("bridge_reading_write_seconds_total"), diff("bridge_reading_repeat_batches_total")
            unacked = [num(r.get("bridge_mqtt_lane_unacknowledged_data")) for r in ks if a <= float(r["unix_s"]) < b]
            unacked = [u for u in unacked if u is not None]
            p(f"| {name} | {fmt(None if stored is None else stored / max(b - a, 1e-9))} "
              f"| {fmt(None if not batches else stored / batches)} "
              f"| {fmt(None if busy is None else 100 * busy / max(b - a, 1e-9), '{:.0f} %')} "
              f"| {fmt(repeats)} of {fmt(batches)} | {fmt(max(unacked) if unacked else None)} "
              f"| {mean_wait('data')} / {mean_wait('control')} |")
        p("")
    if ks and "pg_waits" in ks[0]:
        # Sampled with the online count: what active backends waited for.
        p("What PostgreSQL's active client backends waited for, per period (`pg_stat_activity` "
          "every ONLINE_SAMPLE_SECS; mean backends per sample, `cpu` = not waiting):\n")
        p("| period | samples | waits |\n|---|---|---|")
        for name, a, b in periods:
            samples = [r.get("pg_waits") for r in ks if a <= float(r["unix_s"]) < b
                       and r.get("online_rows") not in (None, "")]
            total = {}
            for w in samples:
                for part in (w or "").split(";"):
                    event, _, n = part.rpartition("=")
                    if event and n.isdigit():
                        total[event] = total.get(event, 0) + int(n)
            top = sorted(total.items(), key=lambda kv: -kv[1])[:6]
            p(f"| {name} | {len(samples)} | "
              + (", ".join(f"{e} {n / max(len(samples), 1):.1f}" for e, n in top) or "–") + " |")
        p("")

try:
    pg = [l for l in open(f"{WORK}/pg-tables.txt") if l.strip()]
    p("PostgreSQL table scans over the run (`pg_stat_user_tables`, most rows read by sequential scans first):\n")
    p("```\n" + "".join(pg[:6]) + "```\n")
except OSError:
    pass

# ------------------------------------------------------------------ Mosquitto
ms = load_csv("mosquitto-samples.csv")
msum = load_json("mosquitto-summary.json")
m0, mh0, mh1 = ev("ramp_start", "mosquitto"), ev("hold_start", "mosquitto"), ev("hold_end", "mosquitto")
if ms and msum:
    mnodes = [c[len("sessions_"):] for c in ms[0].keys() if c.startswith("sessions_mosq")]
    msteady = at(ms, mh1[0], "sim_connected") if mh1 else None
    mdrops = (at(ms, mh1[0], "sim_drops") or 0) - (at(ms, mh0[0], "sim_drops") or 0) if mh0 and mh1 else None
    mper = []
    for n in mnodes:
        rss, s = at(ms, mh1[0], f"rss_kib_{n}"), at(ms, mh1[0], f"sessions_{n}")
        if rss and s:
            mper.append(rss * 1024 / s)
    kfails, mfails = sum(ksum.get("failures", {}).values()), sum(msum.get("failures", {}).values())
    mramp = msum.get("ramp_secs")
    # Kumo's hold before the commands and the kill: devices publishing only,
    # as against Mosquitto (which has no subscriber: no bridge, no tap).
    k_hold = (h0[0], min(e[0] for e in (cmd0, kill, h1) if e)) if h0 and h1 else None
    mgrowth = rss_growth(ms, mnodes, m0[0] if m0 else 0, mh1[0], {}) if mh1 else []
    p(f"### Connect and hold: Kumo vs Mosquitto ({NODES} processes each, same devices and certificates)\n")
    p("| figure | Kumo | Mosquitto | Kumo/Mosquitto |\n|---|---|---|---|")

    def line(name, k, m, f="{:,.0f}"):
        ratio = f"{k / m:.2f}" if k is not None and m else "–"
        p(f"| {name} | {fmt(k, f)} | {fmt(m, f)} | {ratio} |")

    line("peak connected", peak_sim, max((num(r["sim_connected"]) or 0 for r in ms), default=None))
    line("connected at the end of the hold (before any kill, Kumo)", pre_kill if kill else steady, msteady)
    line("time to all connected, s", ramp_secs, mramp, "{:.1f}")
    line("ramp rate (all / time to all connected), devices/s", DEVICES / ramp_secs if ramp_secs else None, DEVICES / mramp if mramp else None)
    line("ramp rate between 10 % and 90 % connected, devices/s", slope(ks, .1, .9), slope(ms, .1, .9))
    line("failed connection attempts (retried)", kfails, mfails)
    line("drops during the hold (Kumo: before the kill)",
         ((at(ks, kill[0] - 0.01, "sim_drops") or 0) - (drops0 or 0)) if kill else hold_drops, mdrops)
    line("node RSS per connection (whole RSS / sessions), mean KiB", sum(per_conn) / len(per_conn) / 1024 if per_conn else None,
         sum(mper) / len(mper) / 1024 if mper else None, "{:.1f}")
    line("node RSS growth per device connection, mean KiB", sum(per_growth) / len(per_growth) / 1024 if per_growth else None,
         sum(mgrowth) / len(mgrowth) / 1024 if mgrowth else None, "{:.1f}")
    if r0 and h0 and m0 and mh0:
        line("node CPU during the ramp, % of the cores", cpu_pct(ks, r0[0], h0[0], "cpu_nodes"), cpu_pct(ms, m0[0], mh0[0], "cpu_nodes"), "{:.0f}")
        line("node CPU seconds per device connection (ramp), ms",
             1000 * cpu_secs(ks, r0[0], h0[0], "cpu_nodes") / DEVICES, 1000 * cpu_secs(ms, m0[0], mh0[0], "cpu_nodes") / DEVICES, "{:.2f}")
    if k_hold and mh0 and mh1:
        line("node CPU during the hold (Kumo: before commands), % of the cores",
             cpu_pct(ks, *k_hold, "cpu_nodes"), cpu_pct(ms, mh0[0], mh1[0], "cpu_nodes"), "{:.1f}")
    line("readings accepted by the nodes (tap) per device per minute, hold",
         tap_rate("kumo-tap.csv", *k_hold) if k_hold else None,
         tap_rate("mosquitto-tap.csv", mh0[0], mh1[0]) if mh0 and mh1 else None, "{:.2f}")
    line("simulator RSS per device, KiB", ksum.get("rss_per_device_bytes", 0) / 1024, msum.get("rss_per_device_bytes", 0) / 1024, "{:.1f}")
    p("")
    if msum.get("failures"):
        p(f"Mosquitto failed attempts by reason: {msum['failures']}\n")

# ------------------------------------------------------------------ plots
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    p("(matplotlib missing: no plot)")
    print("\n".join(out))
    sys.exit(0)


def cpu_series(samples, col):
    xs, ys = [], []
    for a, b in zip(samples, samples[1:]):
        va, vb = num(a.get(col)), num(b.get(col))
        dt = float(b["unix_s"]) - float(a["unix_s"])
        if va is None or vb is None or dt <= 0:
            continue
        xs.append(float(b["unix_s"]))
        ys.append(max(0.0, vb - va) / dt / CORES * 100)
    return xs, ys


def marks(ax, ph, t0):
    for t, name, _, e_ph in events:
        if e_ph != ph or name in ("ramp_start", "drained"):
            continue
        style = {"kill": ("red", "-"), "hold_start": ("green", "--"), "cmd_start": ("purple", ":"),
                 "hold_end": ("gray", "--"), "sim_stopped": ("gray", ":")}.get(name, ("gray", ":"))
        ax.axvline(t - t0, color=style[0], linestyle=style[1], linewidth=1)
        if name == "kill":
            ax.text(t - t0, ax.get_ylim()[1] * 0.95, " kill -9", color="red", va="top", fontsize=8)


def plot(samples, ph, t0, path, title, with_cmds):
    n = 3 if with_cmds else 2
    fig, axes = plt.subplots(n, 1, figsize=(11, 3.2 * n), sharex=True)
    x = [float(r["unix_s"]) - t0 for r in samples]
    ax = axes[0]
    ax.plot(x, [num(r["sim_connected"]) for r in samples], label="connected (simulator)")
    if ph == "kumo":
        ax.plot(x, [num(r["device_sessions"]) for r in samples], label="device sessions (nodes' metrics)", alpha=0.7)
        on = [(xx, num(r["online_rows"])) for xx, r in zip(x, samples) if num(r["online_rows"]) is not None]
        if on:
            ax.plot([a for a, _ in on], [b for _, b in on], "o-", markersize=2, label="presence rows online (bridge DB)")
    else:
        ax.plot(x, [num(r["sessions_total"]) for r in samples], label="sessions (nodes)", alpha=0.7)
    ax.set_ylabel("devices")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for g in GROUPS:
        xs, ys = cpu_series(samples, f"cpu_{g}")
        if ys and max(ys) > 0.5:
            ax.plot([a - t0 for a in xs], ys, label=g, linewidth=1)
    xs, ys = cpu_series(samples, "cpu_machine")
    if ys:
        ax.plot([a - t0 for a in xs], ys, label="whole machine", color="black", linewidth=0.8, alpha=0.6)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"CPU, % of {CORES} cores")
    ax.legend(loc="upper right", fontsize=8, ncol=6)
    ax.grid(alpha=0.3)
    if with_cmds:
        ax = axes[2]
        per = {}
        for r in cmds:
            if r["outcome"] == "acked":
                per.setdefault(int(float(r["unix_s"])), []).append(float(r["latency_ms"]))
        secs = sorted(per)
        ax.plot([s - t0 for s in secs], [pct(per[s], .5) for s in secs], label="p50", linewidth=1)
        ax.plot([s - t0 for s in secs], [pct(per[s], .99) for s in secs], label="p99", linewidth=1)
        failed = {}
        for r in cmds:
            if r["outcome"] != "acked":
                failed[int(float(r["unix_s"]))] = failed.get(int(float(r["unix_s"])), 0) + 1
        if failed:
            ax.plot([s - t0 for s in sorted(failed)], [5000] * len(failed), "x", color="red", label="not acked (at 5 s)")
        ax.set_yscale("log")
        ax.set_ylabel("command latency per second, ms")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3, which="both")
    for ax in axes:
        marks(ax, ph, t0)
    axes[-1].set_xlabel("s since the ramp started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if ks:
    plot(ks, "kumo", t_r0, f"{WORK}/fleet.png",
         f"Kumo: {DEVICES:,} devices, {NODES} nodes, commands at {params.get('CMD_RATE')}/s, kill -9 of node-{params.get('KILL_NODE')}", True)
    p(f"Plot: {WORK}/fleet.png")
if ms and m0:
    plot(ms, "mosquitto", m0[0], f"{WORK}/mosquitto.png", f"Mosquitto: {DEVICES:,} devices, {NODES} processes", False)
    p(f"Plot: {WORK}/mosquitto.png")
print("\n".join(out))
