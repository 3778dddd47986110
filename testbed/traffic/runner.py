"""Start and stop the background traffic of a run, beside its jobs.

Each ``traffic:`` entry starts `start_s` after the network is ready and runs for
`duration_s` or, without one, until every job has ended. Its processes run in their
hosts' namespaces, in sessions of their own, recorded in the ledger like the jobs':

- ``iperf3``: one ``iperf3 -s -1`` on dst and one client on src, their JSON reports
  kept in ``raw/traffic/``;
- ``flows``: one flow agent (`testbed.traffic.agent`) per host of the entry, at the
  arrival rate that makes each host offer `load` x its access link's rate:
  rate = load x bandwidth / (8 x mean flow size).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, Popen

from testbed.cdf import cdf_path, load_cdf
from testbed.errors import TestbedError
from testbed.jobs.forkserver import log_tail
from testbed.layout import RunPaths
from testbed.ledger import Ledger, identity, kill_group
from testbed.network.tc import CLASS_DSCP
from testbed.spec.paths import spec_dir
from testbed.spec.placement import Placement
from testbed.spec.schema import Experiment, FlowsTraffic, Iperf3Traffic

log = logging.getLogger("testbed.traffic")

IPERF_PORT = 5201  # + entry index: entries may share a host
AGENT_PORT = 5300  # + entry index
WHOLE_RUN_S = 86_400  # iperf3 -t (its maximum) for an entry that runs until the jobs end
LISTEN_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
AGENT_START_DELAY_S = 0.3  # agents of one entry start their schedules together


@dataclass
class TrafficEntry:
    """One entry's plan and, once started, its processes."""

    index: int
    spec: Iperf3Traffic | FlowsTraffic
    hosts: list[str]
    procs: list[tuple[Popen, list[int], Path]] = field(default_factory=list)  # + its log
    started: bool = False

    def ends_by(self, elapsed_s: float) -> bool:
        """Whether a timed entry's time is over (an untimed one never ends by itself)."""
        d = self.spec.duration_s
        return d is not None and elapsed_s >= self.spec.start_s + d


def tos(spec) -> int:
    """The IP TOS byte of an entry's packets: its class's DSCP, or 0 (best effort)."""
    return 0 if spec.priority is None else CLASS_DSCP[spec.priority] << 2


def traffic_hosts(spec, all_hosts: list[str], used: set[str]) -> list[str]:
    """The hosts an entry's flows run between."""
    if isinstance(spec, Iperf3Traffic):
        return [spec.src, spec.dst]
    if spec.hosts == "all":
        return list(all_hosts)
    if spec.hosts == "free":
        return [h for h in all_hosts if h not in used]
    return list(spec.hosts)


class TrafficRunner:
    """Every traffic entry of an experiment on a started network."""

    def __init__(
        self,
        exp: Experiment,
        net,
        placements: dict[str, Placement],
        run_dir: Path,
        ledger: Ledger,
        source: str,
    ):
        self.exp, self.net, self.ledger, self.source = exp, net, ledger, source
        self.paths = RunPaths(run_dir)
        self.dir = self.paths.traffic  # agent configs and records, iperf3 reports
        self.logs = self.paths.logs
        used = {h for p in placements.values() for h in p.hosts}
        names = net.topo.host_names()
        self.entries = [
            TrafficEntry(i, spec, traffic_hosts(spec, names, used))
            for i, spec in enumerate(exp.traffic)
        ]
        self.access_mbps = {d.src: d.params.bw_mbps for d in net.topo.directions()}
        if self.entries:  # a run without traffic has no traffic files
            self.dir.mkdir(parents=True, exist_ok=True)
            self.paths.traffic_plan.write_text(json.dumps(self.plan(), indent=1) + "\n")

    def plan(self) -> list[dict]:
        """What each entry will run, for raw/traffic/plan.json and traffic.csv."""
        return [
            {
                "entry": e.index,
                **e.spec.model_dump(mode="json"),
                "hosts": e.hosts,
                "access_mbps": sum(self.access_mbps[h] for h in e.hosts),
            }  # fmt: skip
            for e in self.entries
        ]

    def start_due(self, elapsed_s: float) -> list[TrafficEntry]:
        """Start every entry whose start_s has come; return those started."""
        due = [e for e in self.entries if not e.started and elapsed_s >= e.spec.start_s]
        for entry in due:
            entry.started = True
            if isinstance(entry.spec, Iperf3Traffic):
                self._start_iperf3(entry)
            else:
                self._start_flows(entry)
        return due

    def timed_pending(self, elapsed_s: float) -> bool:
        """Whether a timed entry has yet to start or to end (the run waits for it)."""
        return any(not e.ends_by(elapsed_s) for e in self.entries if e.spec.duration_s)

    def check(self) -> None:
        """Raise `TestbedError` if a traffic process has died: a run whose background
        load stopped is not the run the spec describes. (A timed iperf3 client, and the
        server it leaves, exit 0 when done.)"""
        for entry in self.entries:
            for popen, _, log_path in entry.procs:
                code = popen.poll()
                if code not in (None, 0):
                    raise TestbedError(
                        f"traffic {entry.index} ({entry.spec.kind}): pid {popen.pid} exited "
                        f"{code}: {log_tail(log_path)}"
                    )

    def stop_all(self) -> None:
        """Stop every traffic process: SIGTERM (agents record unfinished flows, iperf3
        writes its report), SIGKILL if one lingers; note when (the end of the
        untimed entries' windows)."""
        if self.entries:
            stopped = {"stopped_unix": time.time()}
            self.paths.traffic_stopped.write_text(json.dumps(stopped) + "\n")
        for entry in self.entries:
            for popen, ident, _ in entry.procs:
                if popen.poll() is None:
                    kill_group(*ident)
                try:
                    popen.wait(timeout=STOP_TIMEOUT_S)
                except Exception:  # the ledger holds its group
                    log.warning("traffic %d: pid %d did not exit", entry.index, popen.pid)

    # ----------------------------------------------------------------- iperf3

    def _start_iperf3(self, entry: TrafficEntry) -> None:
        spec, i = entry.spec, entry.index
        port = str(IPERF_PORT + i)
        server = self.net.host(spec.dst)
        self._spawn(entry, server, ["iperf3", "-s", "-1", "-J", "-p", port], f"iperf3-{i}-server")
        wait_listening(server.pid, IPERF_PORT + i)
        seconds = spec.duration_s if spec.duration_s is not None else WHOLE_RUN_S
        client = ["iperf3", "-c", self.net.topo.host_info[spec.dst].ip, "-p", port, "-J"]
        client += ["-t", f"{seconds:g}", "-P", str(spec.parallel), "-S", str(tos(spec))]
        if spec.proto == "udp":
            client += ["-u", "-b", f"{spec.rate_mbps or 1:g}M"]
        else:
            client += ["-C", "cubic"]  # this kernel defaults to bbr
            if spec.rate_mbps:
                client += ["-b", f"{spec.rate_mbps:g}M"]
        self._spawn(entry, self.net.host(spec.src), client, f"iperf3-{i}-client")

    # ------------------------------------------------------------------ flows

    def _start_flows(self, entry: TrafficEntry) -> None:
        spec, i = entry.spec, entry.index
        sizes = load_cdf(cdf_path(spec.distribution, spec_dir(self.source)))
        start = time.time() + AGENT_START_DELAY_S
        end = start + spec.duration_s if spec.duration_s is not None else None
        ips = {h: self.net.topo.host_info[h].ip for h in entry.hosts}
        for n, host in enumerate(entry.hosts):
            rate = spec.load * self.access_mbps[host] * 1e6 / (8 * sizes.mean)
            config = {
                "entry": i, "host": host, "ip": ips[host], "port": AGENT_PORT + i,
                "peers": [[h, ips[h]] for h in entry.hosts if h != host],
                "rate_per_s": rate, "cdf": [list(sizes.sizes), list(sizes.cdf)],
                "seed": self.exp.seed * 1_000_003 + i * 10_007 + n,
                "start_unix": start, "end_unix": end, "tos": tos(spec),
                "records": str(self.paths.flow_records(i, host)),
            }  # fmt: skip
            path = self.paths.traffic_file(f"agent-{i}-{host}")
            path.write_text(json.dumps(config, indent=1) + "\n")
            argv = [sys.executable, "-m", "testbed.traffic.agent", str(path)]
            self._spawn(entry, self.net.host(host), argv, f"flows-{i}-{host}")

    # ---------------------------------------------------------------- helpers

    def _spawn(self, entry: TrafficEntry, host, argv: list[str], stem: str) -> None:
        """Start `argv` in `host`; stdout to raw/traffic/<stem>.json (iperf3's report)
        or the log, stderr to logs/traffic-<stem>.log."""
        out = self.paths.traffic_file(stem) if argv[0] == "iperf3" else None
        log.debug("traffic %d on %s: %s", entry.index, host.name, argv)
        with open(self.paths.log(f"traffic-{stem}"), "w") as err:
            stdout = open(out, "w") if out else DEVNULL
            try:
                popen = host.popen(argv, stdin=DEVNULL, stdout=stdout, stderr=err, env=_env())
            finally:
                if out:
                    stdout.close()
        self.ledger.add_process(popen.pid)
        entry.procs.append((popen, identity(popen.pid), self.logs / f"traffic-{stem}.log"))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def wait_listening(netns_pid: int, port: int, timeout_s: float = LISTEN_TIMEOUT_S) -> None:
    """Until a TCP socket listens on `port` in the namespace of process `netns_pid`
    (read from /proc/PID/net/tcp: no process needs to start in the namespace)."""
    wanted = f":{port:04X}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{netns_pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A: LISTEN
                    return
        time.sleep(0.05)
    raise TestbedError(f"iperf3 server not listening on port {port} after {timeout_s:.0f} s")
