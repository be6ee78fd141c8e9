#!/usr/bin/env python3
"""Figures of a bench/demand run (markdown on stdout); exit status 1 when the
goal is missed: a unit's command or restore without an outcome by the
deadline (start or end + spread + 10 s), or results slower than
RESULTS_GOAL_SECS or measuring fewer homes than enrolled.

Usage: report.py WORK   (the run's directory: params.env, units.csv, …)
"""

import csv
import json
import os
import sys

GRACE = 10.0  # s after the stagger window by which every outcome must be recorded


def params(work):
    out = {}
    with open(os.path.join(work, "params.env")) as f:
        for line in f:
            for kv in line.split():
                k, _, v = kv.partition("=")
                out[k] = v
    return out


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def spread(values):
    return f"p50 {pct(values, 50):.2f} s, p99 {pct(values, 99):.2f} s, max {pct(values, 100):.2f} s"


def num(v):
    return float(v) if v not in ("", None) else None


def timed(work, name):
    try:
        code, secs = open(os.path.join(work, name)).read().split()
        return code, float(secs)
    except (OSError, ValueError):
        return "?", float("nan")


def main():
    work = sys.argv[1]
    p = params(work)
    start, end, sp = float(p["START"]), float(p["END"]), float(p["SPREAD"])
    goal = float(os.environ.get("RESULTS_GOAL_SECS", "10"))
    rows = list(csv.DictReader(open(os.path.join(work, "units.csv"))))
    missed = []

    def count(key):
        out = {}
        for r in rows:
            out[r[key] or "-"] = out.get(r[key] or "-", 0) + 1
        return ", ".join(f"{k} {v}" for k, v in sorted(out.items()))

    # The event's command: planned → queued → outcome (a skip is its own outcome).
    def step(units, planned_col, queued_col, done_col, skip_state, deadline):
        queued_lag, outcome_lag, late, last = [], [], [], None
        for r in units:
            planned, queued, done = num(r[planned_col]), num(r[queued_col]), num(r[done_col])
            if queued is not None:
                queued_lag.append(queued - planned)
            if done is None and r["state"] == skip_state:
                done = num(r["updated_at"])
            if done is None:
                late.append(r["appliance_id"])
                continue
            outcome_lag.append(done - planned)
            last = done if last is None else max(last, done)
            if done > deadline:
                late.append(r["appliance_id"])
        return queued_lag, outcome_lag, late, last

    queued_lag, outcome_lag, late, last = step(
        rows, "dispatch_at", "queued_at", "done_at", "skipped", start + sp + GRACE)
    # The restore, for units whose command was carried out.
    commanded = [r for r in rows if r["status"] == "acked"]
    r_queued, r_outcome, r_late, r_last = step(
        commanded, "restore_at", "restore_queued_at", "restore_done_at", "restore_skipped",
        end + sp + GRACE)
    not_commanded = len(rows) - len(commanded)
    after = lambda t, t0: f"{t - t0:.2f} s" if t is not None else "never"

    create_code, create_secs = timed(work, "event-create.txt")
    view_code, view_secs = timed(work, "event-view.txt")
    res = []
    for i in (1, 2):
        code, secs = timed(work, f"results-{i}.txt")
        try:
            body = json.load(open(os.path.join(work, f"results-{i}.json")))
        except (OSError, ValueError):
            body = {}
        res.append((code, secs, body))
    body = res[0][2]
    agg = body.get("aggregate", {})
    enrol = open(os.path.join(work, "enrol.codes")).read().split()

    print(f"## Demand response: {len(rows)} units ({p['HOMES']} homes)\n")
    print(f"- parameters: {open(os.path.join(work, 'params.env')).read().strip()}")
    print(f"- enrolment through the API: {len(enrol)} requests, "
          f"{sum(1 for c in enrol if c == '201')} answered 201")
    print(f"- event created (POST, {len(rows)} dispatch rows, body with every unit): "
          f"{create_code} in {create_secs:.2f} s; GET the event: {view_code} in {view_secs:.2f} s")
    print(f"- units by state: {count('state')}; event commands: {count('status')}; "
          f"restores: {count('restore_status')}")
    print(f"- command queued after its planned instant: {spread(queued_lag)}")
    print(f"- command outcome after its planned instant: {spread(outcome_lag)}")
    print(f"- last command outcome at start + {after(last, start)} (goal: spread {sp:.0f} s + {GRACE:.0f} s); "
          f"units without an outcome by then: {len(late)}")
    print(f"- restore queued after its planned instant: {spread(r_queued)}")
    print(f"- restore outcome after its planned instant: {spread(r_outcome)}")
    print(f"- last restore outcome at end + {after(r_last, end)}; "
          f"acked units without a restore outcome by end + {sp + GRACE:.0f} s: {len(r_late)}")
    for i, (code, secs, b) in enumerate(res, 1):
        print(f"- results (request {i}): {code} in {secs:.2f} s")
    print(f"- results: homes {body.get('homes')}, commanded {body.get('commanded')}, "
          f"responded {body.get('responded')}, commands failed {body.get('commands_failed')}, "
          f"homes measured {agg.get('homes_measured')}; aggregate baseline {agg.get('baseline_kwh')} kWh, "
          f"actual {agg.get('actual_kwh')} kWh (synthetic meter data: not a result)")
    if not_commanded:
        missed.append(f"{not_commanded} units not commanded or not acked")
    if late or r_late:
        missed.append(f"{len(late)} commands and {len(r_late)} restores late or without outcome")
    if not res[0][0] == "200" or res[0][1] > goal:
        missed.append(f"results {res[0][0]} in {res[0][1]:.2f} s (goal {goal:.0f} s)")
    if agg.get("homes_measured") != body.get("homes"):
        missed.append(f"{agg.get('homes_measured')} of {body.get('homes')} homes measured")
    print(f"\n**{'goal met' if not missed else 'goal missed: ' + '; '.join(missed)}**")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
