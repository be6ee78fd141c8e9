#!/usr/bin/env python3
"""Report of bench/demand/sim-response.sh: what an event's results say about
simulated households, and what their meters' instantaneous power says.

Usage: sim_response.py WORK   (prints markdown; exit status 1 if the goal is missed)

Inputs in WORK: params.env, results.json (GET /v1/aggregator/events/{id}/results),
power.csv (per meter: mean W in the WINDOW_SECS before the event, and during it
from STAGGER_SECS + 30 s after its start: every unit moved, the room settling).

Homes whose consent excludes the event's hour are skipped by it: they are the
control group (High 4 of 5's own bias). The goal: every home measured, and the
commanded homes' mean reduction above the control's by more than twice the
standard error of the difference.
"""

import csv
import json
import statistics
import sys

WORK = sys.argv[1]
params = dict(tok.partition("=")[::2] for tok in open(f"{WORK}/params.env").read().split())
homes = int(params["HOMES"])
window = int(params["WINDOW_SECS"])
stagger = int(params["STAGGER_SECS"])
r = json.load(open(f"{WORK}/results.json"))
agg = r.get("aggregate", {})
per_home = r.get("per_home", [])
power = {}
for row in csv.DictReader(open(f"{WORK}/power.csv")):
    if row["before_w"] and row["during_w"]:
        power[row["device_id"]] = (float(row["before_w"]), float(row["during_w"]))


def group(commanded):
    homes_ = [h for h in per_home if h.get("commanded") == commanded]
    red = [h["reduction_kwh"] for h in homes_ if h.get("reduction_kwh") is not None]
    base = [h["baseline_kwh"] for h in homes_ if h.get("baseline_kwh") is not None]
    watts = [power[h["meter"]] for h in homes_ if h.get("meter") in power]
    return homes_, red, base, watts


def mean_se(xs):
    if len(xs) < 2:
        return (xs[0] if xs else 0.0), float("inf")
    return statistics.mean(xs), statistics.stdev(xs) / len(xs) ** 0.5


print(f"## Demand response over {homes} simulated households\n")
print(f"Parameters: {open(f'{WORK}/params.env').read().splitlines()[0]}\n")
print(f"Event: {r.get('homes')} homes, {r.get('commanded')} commanded, {r.get('responded')} responded, "
      f"{r.get('commands_failed')} commands failed; {agg.get('homes_measured')} measured. "
      f"Aggregate over the half hour: baseline {agg.get('baseline_kwh')} kWh, actual {agg.get('actual_kwh')} kWh, "
      f"reduction {agg.get('reduction_kwh')} kWh.\n")
notes = {}
for h in per_home:
    if h.get("note"):
        notes[h["note"]] = notes.get(h["note"], 0) + 1
for n, k in notes.items():
    print(f"- not measured: {n}: {k}")
print("| per home, half hour | commanded (the event) | not commanded (its hour excluded: the control) |")
print("|---|---|---|")
ev, ctl = group(True), group(False)
print(f"| homes / measured | {len(ev[0])} / {len(ev[1])} | {len(ctl[0])} / {len(ctl[1])} |")
for label, idx in (("baseline, mean kWh", 2), ("reduction (baseline − actual), mean ± s.e., kWh", 1)):
    cells = []
    for g in (ev, ctl):
        m, se = mean_se(g[idx])
        cells.append(f"{m:.4f}" + (f" ± {se:.4f}" if idx == 1 else ""))
    print(f"| {label} | {cells[0]} | {cells[1]} |")
cells = []
for g in (ev, ctl):
    pos = sum(1 for x in g[1] if x > 0)
    cells.append(f"{pos} of {len(g[1])}")
print(f"| reduction > 0 | {cells[0]} | {cells[1]} |")
cells = []
for g in (ev, ctl):
    if g[3]:
        b = statistics.mean(w[0] for w in g[3])
        d = statistics.mean(w[1] for w in g[3])
        cells.append(f"{b:.0f} / {d:.0f} W")
    else:
        cells.append("–")
print(f"| meters' mean power (EPC 0xE7) in the {window} s before / during the window | {cells[0]} | {cells[1]} |")

(me, se_e), (mc, se_c) = mean_se(ev[1]), mean_se(ctl[1])
effect, se = me - mc, (se_e ** 2 + se_c ** 2) ** 0.5
print(f"\n**The event's effect per home** (commanded minus control): **{effect:.4f} ± {se:.4f} kWh** "
      f"in the half hour.")
if ev[3] and ctl[3]:
    drop = lambda g: statistics.mean(w[0] - w[1] for w in g[3])
    # A unit moves within the stagger, half of it on average.
    hours = (window - stagger / 2) / 3600
    print(f"From the meters' power: the commanded homes drew {drop(ev):.0f} W less during the window than before it, "
          f"the control homes {drop(ctl):.0f} W less; the difference over the window is "
          f"{(drop(ev) - drop(ctl)) * hours / 1000:.4f} kWh per home.")
ok = agg.get("homes_measured") == homes and effect > 2 * se
print()
print("**goal met**" if ok else "**goal missed** (every home measured, effect > 2 standard errors)")
sys.exit(0 if ok else 1)
