#!/usr/bin/env python3
"""Samples a running fleet once per period into a CSV file (bench/fleet/run.sh).

Usage: sample.py WORK OUT.csv PERIOD_S [ONLINE_EVERY_S]

Reads, every period:
- WORK/nodes.txt: one `name pid mqtt_port http_port` line per node (http_port
  `-` for Mosquitto): device sessions from the node's Prometheus metrics
  (`kumo_broker_sessions_open`, `kumo_broker_connects_shed_total`; empty when
  the node does not answer within 2 s), or for
  Mosquitto its open descriptors (`/proc/<pid>/fd`); RSS and CPU
  (utime + stime, all threads) from /proc. A node whose pid is gone reads 0.
- WORK/groups.txt: one `group pid` line per process to account for (bridge,
  sim, tools); a process's children are added to its group (the simulator's
  workers), and `postgres` gathers every process whose working directory is
  under WORK/data (the private PostgreSQL).
- WORK/sim.err: the simulator's last progress line (connected, failed, drops).
- /proc/stat: CPU time of the whole machine (so other jobs show up), and of it
  the interrupt handling (irq + softirq) and the time stolen by the hypervisor;
- every ONLINE_EVERY_S (5), on a thread of its own (see `SlowReads`): the
  devices `online` in the database, as the bridge's /metrics counts them;
- the nodes' confirmation timeouts and resends (`kumo_broker_confirm_timeouts_total`,
  `kumo_broker_confirm_resends_total`, summed;
  a node that does not answer, or was killed, counts with its last answer, so the
  sum never goes down), and the sessions they ended by reason
  (`kumo_broker_disconnects_total`, summed the same way, as `reason=count;…`:
  tells a node's keepalive timeout from a connection the device lost), and the
  messages they dropped (`kumo_broker_outbound_dropped_total` for a full client
  queue + `kumo_broker_session_dropped_total` over a kept session's cap, summed)
  and, with the online count's period, the bridge's report and acknowledgement
  figures from its /metrics (port in WORK/bridge_metrics_port): reports stored,
  their transactions and time, QoS 1 messages not yet acknowledged; and what
  PostgreSQL's active client backends wait for (`pg_stat_activity`).

Columns are cumulative where that is natural (CPU seconds, counters); the
report turns them into rates. Stops when WORK/sample.stop exists.
"""

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def proc_stat(pid):
    """(cpu seconds, rss KiB, ppid) of pid, or None."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return None
    fields = s[s.rfind(")") + 2:].split()
    # fields[0] is state (field 3); utime/stime are fields 14/15, rss 24, ppid 4.
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = int(fields[21]) * PAGE_KIB
    return cpu, rss, int(fields[1])


def machine_busy():
    """CPU seconds all cores spent not idle (any process, this run's or not),
    and of them in the kernel's interrupt handling (irq + softirq: for this
    box mostly loopback networking, not counted to any process) and stolen
    by the hypervisor."""
    fields = read("/proc/stat").split("\n", 1)[0].split()[1:]
    vals = [int(v) for v in fields[:8]]
    idle = vals[3] + vals[4]  # idle + iowait
    return ((sum(vals) - idle) / TICK, (vals[5] + vals[6]) / TICK, vals[7] / TICK)


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(d)
            if st:
                out[int(d)] = st
    return out


def metrics(port, timeout=2):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except Exception:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(WANTED):
            k, v = line.split()[:2]
            vals[k] = float(v)
        elif line.startswith(DISCONNECTS):
            m = re.match(r'kumo_broker_disconnects_total\{reason="([a-z_]+)"\} (\S+)', line)
            if m:
                vals.setdefault("disconnects", {})[m.group(1)] = float(m.group(2))
    return vals


# Figures read from the nodes' and the bridge's /metrics (unlabelled lines).
WANTED = (
    "kumo_broker_sessions_open ",
    "kumo_broker_connects_shed_total ",
    "kumo_broker_confirm_timeouts_total ",
    "kumo_broker_confirm_resends_total ",
    "kumo_broker_outbound_dropped_total ",
    "kumo_broker_session_dropped_total ",
    "kumo_bridge_reports_stored_total ",
    "kumo_bridge_report_batches_total ",
    "kumo_bridge_report_batch_seconds_total ",
    "kumo_bridge_mqtt_unacknowledged ",
    "kumo_bridge_db_pool_waiting ",
    "kumo_bridge_api_db_pool_waiting ",
    "kumo_bridge_devices_online ",
    "kumo_bridge_readings_stored_total ",
    "kumo_bridge_reading_batches_total ",
    "kumo_bridge_reading_write_seconds_total ",
    "kumo_bridge_reading_repeat_batches_total ",
    'kumo_bridge_mqtt_lane_unacknowledged{lane="data"} ',
    'kumo_bridge_mqtt_acknowledged_total{lane="data"} ',
    'kumo_bridge_mqtt_ack_wait_seconds_total{lane="data"} ',
    'kumo_bridge_mqtt_acknowledged_total{lane="control"} ',
    'kumo_bridge_mqtt_ack_wait_seconds_total{lane="control"} ',
)
# Sessions the nodes ended, by reason (labelled): who closed a dropped device.
DISCONNECTS = "kumo_broker_disconnects_total{"
BRIDGE = [
    "kumo_bridge_reports_stored_total",
    "kumo_bridge_report_batches_total",
    "kumo_bridge_report_batch_seconds_total",
    "kumo_bridge_mqtt_unacknowledged",
    "kumo_bridge_db_pool_waiting",
]
# Added after fleet run 42 (new columns go last, so older files still read):
# the reading writer, and each lane's acknowledgements (in arrival order).
BRIDGE_WRITER = [w.strip() for w in WANTED if w.startswith(("kumo_bridge_reading", "kumo_bridge_mqtt_lane",
                                                             "kumo_bridge_mqtt_ack"))]
# Added after fleet run 51: the REST API's own pool (`bridge.api_pool_size`).
BRIDGE_API = ["kumo_bridge_api_db_pool_waiting"]


def column(metric):
    """`kumo_bridge_x{lane="data"}` -> `bridge_x_data`."""
    return re.sub(r'\{lane="(\w+)"\}', r"_\1", metric.replace("kumo_bridge_", "bridge_"))


def open_fds(pid):
    """Descriptors the process holds: its connections plus a constant few
    (listeners, log, epoll), which the report subtracts as what it held before
    the devices came. One directory read; `ss` per port took seconds at
    250,000 sockets and timed out into wrong counts."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


PROGRESS = re.compile(r"connected (\d+)/(\d+).*?failed (\d+).*?drops (\d+)")


def sim_progress(work):
    """(connected, failed attempts, drops) from the last progress line."""
    try:
        with open(f"{work}/sim.err", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return "", "", ""
    for line in reversed(tail.splitlines()):
        m = PROGRESS.search(line)
        if m:
            return m.group(1), m.group(3), m.group(4)
    return "", "", ""


def pg_waits(work):
    """What PostgreSQL's active backends wait for now, as
    `event=count;…` (`cpu` when not waiting): where report transactions spend
    their time when the database is not busy."""
    url = read(f"{work}/db_url").strip()
    if not url:
        return ""
    query = ("SELECT string_agg(w || '=' || n, ';' ORDER BY n DESC) FROM ("
             "SELECT coalesce(wait_event_type || ':' || wait_event, 'cpu') AS w, count(*) AS n "
             "FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
             "AND backend_type = 'client backend' GROUP BY 1) s")
    try:
        return subprocess.run(["psql", url, "-X", "-q", "-At", "-c", query],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


class SlowReads(threading.Thread):
    """The bridge's /metrics (its devices-online count is a scan of
    `devices`) and PostgreSQL's waits take seconds on a busy machine: they
    are read on a thread of their own every `online_every` s, and each row
    takes what was read since the row before. Until run 53 they were read
    between the one-second samples, which then stalled for up to ~7 s around
    the kill (when the recovery is measured); and the sampler counted the
    devices online and the rows in `readings` itself too — scans that were
    ~4 % of the machine in the hold (run 51), the readings count unused by
    the report (the bridge's `kumo_bridge_readings_stored_total` is in every
    row; the drain counts the rows at the end). `readings_rows` stays, empty."""

    def __init__(self, work, bridge_port, online_every):
        super().__init__(daemon=True)
        self.work, self.bridge_port, self.online_every = work, bridge_port, online_every
        self.lock = threading.Lock()
        self.fresh = None

    def run(self):
        while not os.path.exists(f"{self.work}/sample.stop"):
            t0 = time.time()
            b = (metrics(self.bridge_port, 10) if self.bridge_port else None) or {}
            waits = pg_waits(self.work)
            online = b.get("kumo_bridge_devices_online")
            with self.lock:
                self.fresh = ("" if online is None else f"{online:.0f}", b, waits)
            time.sleep(max(0.05, self.online_every - (time.time() - t0)))

    def take(self):
        """What was read since the last call: (devices online, the bridge's
        metrics, PostgreSQL's waits), or empty values."""
        with self.lock:
            fresh, self.fresh = self.fresh, None
        return fresh or ("", {}, "")


def main():
    work, out_path, period = sys.argv[1], sys.argv[2], float(sys.argv[3])
    online_every = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    nodes = [l.split() for l in read(f"{work}/nodes.txt").splitlines() if l.strip()]
    groups = ["bridge", "postgres", "sim", "tools"]
    header = ["unix_s", "sessions_total", "shed_total"]
    header += [f"sessions_{n[0]}" for n in nodes]
    header += [f"rss_kib_{n[0]}" for n in nodes]
    header += ["cpu_nodes", "rss_kib_nodes"]
    header += [f"cpu_{g}" for g in groups] + [f"rss_kib_{g}" for g in groups] + ["cpu_machine"]
    header += ["sim_connected", "sim_failed", "sim_drops", "readings_rows", "online_rows"]
    # The bridge's /metrics counts devices online in the database (a scan):
    # read with the online count's period, not every second.
    bridge_port = read(f"{work}/bridge_metrics_port").strip()
    header += ["confirm_timeouts"] + [b.replace("kumo_bridge_", "bridge_") for b in BRIDGE]
    header += ["pg_waits", "cpu_machine_irq", "cpu_machine_steal", "node_disconnects", "node_dropped",
               "confirm_resends"]
    header += [column(b) for b in BRIDGE_WRITER]
    header += [column(b) for b in BRIDGE_API]
    slow = SlowReads(work, bridge_port, online_every)
    slow.start()
    # The nodes' /metrics, all at once: one busy node delays a sample by at
    # most its 2 s timeout, not 2 s each.
    scrapes = ThreadPoolExecutor(max_workers=max(1, len(nodes)))
    # Each node's last answered counters: (shed, confirmation timeouts,
    # disconnects by reason, messages dropped, confirmation resends).
    counted = {}
    with open(out_path, "w") as out:
        out.write(",".join(header) + "\n")
        while not os.path.exists(f"{work}/sample.stop"):
            t0 = time.time()
            # The simulator's counts first, so they belong to t0: read after
            # the nodes' metrics (seconds under load), the killed node's drops
            # were stamped before the kill (fleet run 30).
            progress = sim_progress(work)
            procs = all_procs()
            children = {}
            for pid, (_, _, ppid) in procs.items():
                children.setdefault(ppid, []).append(pid)
            sessions, rss, shed, timeouts, resends = [], [], 0.0, 0.0, 0.0
            disconnects = {}
            dropped = 0.0
            cpu_nodes = rss_nodes = 0.0
            answers = dict(zip(
                [n[0] for n in nodes],
                scrapes.map(lambda n: metrics(n[3]) if n[3] != "-" and int(n[1]) in procs else None, nodes)))
            for name, pid, port, http in nodes:
                st = procs.get(int(pid))
                if st is None:
                    sessions.append(0)
                    rss.append(0)
                    node_shed, node_timeouts, node_disc, node_dropped, node_resends = counted.get(
                        name, (0.0, 0.0, {}, 0.0, 0.0))
                    shed += node_shed
                    timeouts += node_timeouts
                    resends += node_resends
                    dropped += node_dropped
                    for k, v in node_disc.items():
                        disconnects[k] = disconnects.get(k, 0.0) + v
                    continue
                cpu_nodes += st[0]
                rss_nodes += st[1]
                rss.append(st[1])
                if http == "-":
                    sessions.append(open_fds(pid))
                else:
                    # A node too busy to answer within 2 s reads as unknown, not 0.
                    m = answers[name]
                    sessions.append(None if m is None else int(m.get("kumo_broker_sessions_open", 0)))
                    if m is not None:
                        counted[name] = (m.get("kumo_broker_connects_shed_total", 0),
                                         m.get("kumo_broker_confirm_timeouts_total", 0),
                                         m.get("disconnects", {}),
                                         m.get("kumo_broker_outbound_dropped_total", 0)
                                         + m.get("kumo_broker_session_dropped_total", 0),
                                         m.get("kumo_broker_confirm_resends_total", 0))
                    node_shed, node_timeouts, node_disc, node_dropped, node_resends = counted.get(
                        name, (0.0, 0.0, {}, 0.0, 0.0))
                    shed += node_shed
                    timeouts += node_timeouts
                    resends += node_resends
                    dropped += node_dropped
                    for k, v in node_disc.items():
                        disconnects[k] = disconnects.get(k, 0.0) + v
            members = {g: set() for g in groups}
            # The private PostgreSQL is a child of `kumo up`: its own group.
            data_dir = f"{work}/data"
            for pid in procs:
                try:
                    if os.readlink(f"/proc/{pid}/cwd").startswith(data_dir):
                        members["postgres"].add(pid)
                except OSError:
                    pass
            for line in read(f"{work}/groups.txt").splitlines():
                parts = line.split()
                if len(parts) != 2 or parts[0] not in members:
                    continue
                stack = [int(parts[1])]
                while stack:
                    p = stack.pop()
                    if p in procs and p not in members[parts[0]] and p not in members["postgres"]:
                        members[parts[0]].add(p)
                        stack.extend(children.get(p, []))
            cpu = {g: sum(procs[p][0] for p in members[g]) for g in groups}
            mem = {g: sum(procs[p][1] for p in members[g]) for g in groups}
            online, b, waits = slow.take()
            db = ("", online)
            known = None not in sessions
            row = [f"{t0:.3f}", str(sum(sessions)) if known else "", f"{shed:.0f}"]
            row += ["" if s is None else str(s) for s in sessions] + [str(r) for r in rss]
            row += [f"{cpu_nodes:.2f}", f"{rss_nodes:.0f}"]
            row += [f"{cpu[g]:.2f}" for g in groups] + [f"{mem[g]:.0f}" for g in groups]
            busy, irq, steal = machine_busy()
            row += [f"{busy:.2f}"]
            row += list(progress) + list(db)
            row += [f"{timeouts:.0f}"] + [f"{b[k]:g}" if k in b else "" for k in BRIDGE]
            row += [waits]
            row += [f"{irq:.2f}", f"{steal:.2f}"]
            row += [";".join(f"{k}={v:.0f}" for k, v in sorted(disconnects.items()))]
            row += [f"{dropped:.0f}", f"{resends:.0f}"]
            row += [f"{b[k]:g}" if k in b else "" for k in BRIDGE_WRITER]
            row += [f"{b[k]:g}" if k in b else "" for k in BRIDGE_API]
            out.write(",".join(row) + "\n")
            out.flush()
            time.sleep(max(0.05, period - (time.time() - t0)))


if __name__ == "__main__":
    main()
