#!/usr/bin/env python3
"""Figures and plot of one bench/soak/run.sh run.

Usage: report.py WORK     (prints markdown; writes WORK/soak.png)

Inputs in WORK: params.env, events.csv (`unix_s,event,detail`), samples.csv
(node RSS and descriptors, bridge RSS, simulator), commands.csv
(`kumo-bench commands --samples`), commands.json, sim-summary.json.

Figures: the node's RSS at the end of the warm-up, at the end and its peak
after the warm-up, growth in % (end vs warm-up end) and the slope of a
least-squares line through the samples after the warm-up (% per hour); the
slope in the first and second half after the warm-up (a filled bounded
cache flattens, a leak does not); the range of its open descriptors after the
warm-up; command p50/p99 of acked
commands and not-acked ones per minute, with the slope of p99 over the minutes.
"""

import csv
import json
import math
import sys

WORK = sys.argv[1]


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


def pct(vals, p):
    if not vals:
        return None
    vals = sorted(vals)
    return vals[min(len(vals), max(1, math.ceil(p * len(vals)))) - 1]


def slope(points):
    """Least-squares slope of (x, y) points, or None."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den


params = dict(tok.partition("=")[::2] for tok in open(f"{WORK}/params.env").read().split())
events = {}
for line in open(f"{WORK}/events.csv"):
    t, name, _detail = (line.rstrip("\n").split(",", 2) + [""])[:3]
    events.setdefault(name, float(t))
t0 = events.get("soak_start")
t_end = events.get("soak_end")
warmup = float(params.get("WARMUP_SECS", 300))
samples = [r for r in load_csv("samples.csv") if num(r.get("node_rss_kib"))]
if t0 is None or not samples:
    print("no soak samples (did the run reach the soak?)")
    sys.exit(1)
t_warm = t0 + warmup
after = [r for r in samples if t_warm <= float(r["unix_s"]) <= (t_end or 1e12)]

print(f"## Soak: {params['DEVICES']} devices on one node, {params['SOAK_SECS']} s\n")
print(f"Churn {float(params['CHURN_PER_MIN']) * 100:.0f} % of devices per minute (clean disconnects, "
      f"≤ {params['OFFLINE_MAX_MS']} ms offline), telemetry every {params['REPORT_MS']} ms, "
      f"commands {params['CMD_RATE']}/s from {params['CMD_DELAY']} s, warm-up {params['WARMUP_SECS']} s. "
      f"Panics in the node's and bridge's logs: {params.get('PANICS', '?')}.\n")

mib = lambda kib: f"{kib / 1024:.1f} MiB"
if after:
    rss = [(float(r["unix_s"]), float(r["node_rss_kib"])) for r in after]
    base, end, peak = rss[0][1], rss[-1][1], max(v for _, v in rss)
    per_hour = slope([((t - rss[0][0]) / 3600, v) for t, v in rss])
    fds = [int(r["node_fds"]) for r in after if num(r.get("node_fds"))]
    brss = [float(r["bridge_rss_kib"]) for r in after if num(r.get("bridge_rss_kib"))]
    print("| figure | value |")
    print("|---|---|")
    print(f"| node RSS at the end of the warm-up | {mib(base)} |")
    print(f"| node RSS at the end | {mib(end)} |")
    print(f"| node RSS peak after the warm-up | {mib(peak)} |")
    print(f"| **node RSS growth after the warm-up** | **{(end - base) / base * 100:+.1f} %** "
          f"(peak {(peak - base) / base * 100:+.1f} %) |")
    if per_hour is not None:
        print(f"| node RSS trend (least squares) | {per_hour / base * 100:+.1f} % per hour |")
    # A bounded cache that has filled (the router's logs) shows as a flat
    # second half; a leak keeps its slope.
    half = [p for p in rss if p[0] >= (rss[0][0] + rss[-1][0]) / 2]
    late = slope([((t - half[0][0]) / 60, v / 1024) for t, v in half]) if len(half) >= 2 else None
    early = slope([((t - rss[0][0]) / 60, v / 1024) for t, v in rss if t < half[0][0]]) if half else None
    if late is not None and early is not None:
        print(f"| node RSS slope, first / second half after the warm-up | {early:+.2f} / {late:+.2f} MiB per minute |")
    if fds:
        print(f"| node open descriptors after the warm-up | {min(fds):,} – {max(fds):,} |")
    if brss:
        print(f"| bridge process (`kumo up`, PostgreSQL not included) RSS after the warm-up | {mib(brss[0])} → {mib(brss[-1])} |")
    conn = [int(r["sim_connected"]) for r in after if num(r.get("sim_connected"))]
    if conn:
        print(f"| devices connected after the warm-up | {min(conn):,} – {max(conn):,} |")
    cpu = [(float(r["unix_s"]), float(r["node_cpu_ticks"])) for r in after if num(r.get("node_cpu_ticks"))]
    if len(cpu) >= 2:
        print(f"| node CPU after the warm-up | {(cpu[-1][1] - cpu[0][1]) / 100 / (cpu[-1][0] - cpu[0][0]) * 100:.0f} % of a core |")
else:
    print(f"(the soak ended before the {warmup:.0f} s warm-up: no growth figures)\n")

summary = {}
try:
    summary = json.load(open(f"{WORK}/sim-summary.json"))
except (OSError, ValueError):
    pass
if summary:
    print(f"| simulator: chaos disconnects (churn) | {summary.get('chaos_disconnects', '?'):,} |")
    print(f"| simulator: drops (lost connections) | {summary.get('drops', '?')} |")
    print(f"| simulator: readings sent again (no PUBACK before a reconnect or a full window) | {summary.get('resent', '?'):,} |")
try:
    confirm = dict(line.split() for line in open(f"{WORK}/node-confirm.txt") if line.strip())
except (OSError, ValueError):
    confirm = {}
if confirm:
    figures = " / ".join(confirm.get(f"kumo_broker_confirm_{k}_total", "?") for k in ("timeouts", "resends", "deferrals"))
    print(f"| node: copies answered unconfirmed / routed again / deadlines moved on | {figures} |")

cmds = load_csv("commands.csv")
minutes = {}
for r in cmds:
    m = int((float(r["unix_s"]) - t0) // 60)
    acked, lat = r["outcome"] == "acked", float(r["latency_ms"])
    row = minutes.setdefault(m, {"lat": [], "other": 0})
    if acked:
        row["lat"].append(lat)
    else:
        row["other"] += 1
c = {}
try:
    c = json.loads(open(f"{WORK}/commands.json").read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    pass
if c:
    print(f"\nCommands: {c.get('sent'):,} sent, {c.get('acked'):,} acked, {c.get('not_acked')} not acked in the 5 s wait, "
          f"{c.get('http_errors')} HTTP errors, {c.get('failed')} failed; p50 {c.get('p50_ms', 0):.0f} ms, "
          f"p99 {c.get('p99_ms', 0):.0f} ms overall.\n")
# A minute the commands only partly covered (the first and the last) says
# little about the trend: kept in the table, left out of the trend and plot.
full = sorted(len(v["lat"]) + v["other"] for v in minutes.values())
typical = full[len(full) // 2] if full else 0
p99s = []
if minutes:
    print("| minute of the soak | acked | not acked | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for m in sorted(minutes):
        lat = minutes[m]["lat"]
        p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
        if p99 is not None and len(lat) + minutes[m]["other"] >= typical * 0.8:
            p99s.append((m, p99))
        print(f"| {m} | {len(lat)} | {minutes[m]['other']} | {p50 or 0:.0f} | {p99 or 0:.0f} |")
    s = slope(p99s)
    if s is not None and len(p99s) >= 4:
        k = max(1, len(p99s) // 4)
        first = sorted(v for _, v in p99s[:k])[k // 2]
        last = sorted(v for _, v in p99s[-k:])[k // 2]
        print(f"\np99 trend: {s:+.1f} ms per minute (least squares over {len(p99s)} minutes); "
              f"median p99 of the first {k} minutes {first:.0f} ms, of the last {k} {last:.0f} ms.")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("\n(matplotlib missing: no plot)")
    sys.exit(0)
fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
mins = lambda t: (t - t0) / 60
# The sampler outlives the soak by a few seconds while the run shuts down:
# those samples are not part of the soak and are not drawn.
shown = [r for r in samples if float(r["unix_s"]) <= (t_end or 1e12)]
xs = [mins(float(r["unix_s"])) for r in shown]
axes[0].plot(xs, [float(r["node_rss_kib"]) / 1024 for r in shown], label="node RSS")
axes[0].plot(xs, [(num(r.get("bridge_rss_kib")) or 0) / 1024 for r in shown], label="bridge RSS")
axes[0].axvline(warmup / 60, color="grey", linestyle=":", label="end of warm-up")
axes[0].set_ylabel("MiB")
axes[0].legend(loc="upper left")
axes[1].plot(xs, [num(r.get("node_fds")) or 0 for r in shown], label="node open descriptors")
axes[1].plot(xs, [num(r.get("sim_connected")) or 0 for r in shown], label="devices connected (sim)")
axes[1].set_ylabel("count")
axes[1].legend(loc="lower right")
if p99s:
    axes[2].plot([m + 0.5 for m, _ in p99s], [v for _, v in p99s], marker=".", label="command p99 (acked)")
    axes[2].plot([m + 0.5 for m, _ in p99s], [pct(minutes[m]["lat"], 0.5) for m, _ in p99s],
                 marker=".", label="command p50")
    axes[2].legend(loc="upper left")
axes[2].set_ylabel("ms")
axes[2].set_xlabel("minutes into the soak")
fig.suptitle(f"Soak: {params['DEVICES']} devices on one node, "
             f"{float(params['CHURN_PER_MIN']) * 100:.0f} %/min reconnecting, {params['CMD_RATE']} commands/s")
fig.tight_layout()
fig.savefig(f"{WORK}/soak.png", dpi=90)
print(f"\nPlot: {WORK}/soak.png")
