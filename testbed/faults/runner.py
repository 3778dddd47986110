"""Fire the spec's faults on a running network and record each in faults.csv.

A link goes down as a cable pull: both of its interfaces are set down (the tc tree on
each stays configured, so the link comes back with its emulation). A switch goes down
as its neighbours see a dead switch: every link of it goes down the same way (its
OpenFlow connection stays up, as in Mininet's ``link down``). A link is up again
only when nothing holds it down (its own fault and its switches' faults).

Times are seconds since the run started (the clock of links.csv). `detected_at_s` is
when the harness or the controller noticed (ports.csv of the controller), and
`recovered_at_s` when the pairs probed got through again, the server went on without
a killed worker, or a restarted controller had programmed every switch.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from controllers.topology import Fabric
from testbed import shell
from testbed.control import ControllerProcess
from testbed.faults import paths, probe
from testbed.jobs.launch import JobRunner
from testbed.layout import RunPaths, records_name
from testbed.ledger import Ledger
from testbed.network.protocol import Network
from testbed.network.tc import CLASS_DSCP
from testbed.results.read import read_csv
from testbed.spec.schema import Experiment

log = logging.getLogger("testbed.faults")

MAX_PAIRS = 24  # probed per fault: enough to see the slowest pair, few enough for 2 cores
FAULT_COLUMNS = [
    "at_s", "time_s", "what", "detected_at_s", "recovered_at_s", "recovery_s",
    "probed_pairs", "disrupted_pairs", "recovery_p50_s", "detail",
]  # fmt: skip


@dataclass
class Fault:
    """One spec entry and what became of it."""

    index: int
    spec: object
    what: str
    fired_at: float | None = None  # unix time
    detected_at: float | None = None
    recovered_at: float | None = None
    links: set = field(default_factory=set)  # links this fault takes down or up
    pairs: list = field(default_factory=list)  # (src, dst) probed
    probes: list = field(default_factory=list)  # (src host, Popen, output path, targets)
    probe_ended: float | None = None
    summary: dict = field(default_factory=dict)
    detail: str = ""

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def down(self) -> bool:
        return getattr(self.spec, "action", "") == "down"


def describe(spec) -> str:
    """A fault as faults.csv's `what` names it."""
    if spec.kind == "link":
        return f"link {spec.link[0]}-{spec.link[1]} {spec.action}"
    if spec.kind == "switch":
        return f"switch {spec.switch} {spec.action}"
    if spec.kind == "host":
        return f"host {spec.host} kill"
    return "controller kill"


class FaultRunner:
    """The faults of one run: `step` from the run's poll loop, `finish` at the end."""

    def __init__(
        self,
        exp: Experiment,
        net: Network,
        controller: ControllerProcess,
        ledger: Ledger,
        jobs: JobRunner,
        run_dir: Path,
        t0: float,
    ):
        self.exp, self.net, self.controller, self.ledger = exp, net, controller, ledger
        self.jobs, self.t0 = jobs, t0
        self.fabric = Fabric.from_json(net.topo.document())
        self.ips = {name: info.ip for name, info in net.topo.host_info.items()}
        paths = RunPaths(run_dir)
        self.dir, self.csv, self.ports_csv = paths.faults, paths.table("faults"), paths.ports
        self.faults = [Fault(i, f, describe(f)) for i, f in enumerate(exp.faults)]
        for fault in self.faults:
            fault.links = self._links_of(fault.spec)
        self.holds: dict[frozenset, set[str]] = {}  # link -> what holds it down
        # Probes ride the top band where switches have bands: a queue the jobs fill then
        # does not pass for an outage.
        self.tos = CLASS_DSCP[0] << 2 if exp.switch_bands() > 1 else None
        self.controller_events: list[dict] = []  # for metadata.json
        self._restart: threading.Thread | None = None
        if self.faults:
            self.dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ running

    def step(self, elapsed_s: float) -> list[Fault]:
        """Start probes due, fire faults due, stop probes past their window; return
        the faults fired now."""
        fired = []
        for fault in self.faults:
            if fault.fired_at is None and fault.down and not fault.probes:
                if elapsed_s >= fault.spec.at_s - probe.LEAD_S:
                    self._start_probes(fault)
            if fault.fired_at is None and elapsed_s >= fault.spec.at_s:
                self._fire(fault)
                fired.append(fault)
            if fault.probes and fault.probe_ended is None and fault.fired_at:
                if time.time() > fault.fired_at + probe.WINDOW_S:
                    self._stop_probes(fault)
        return fired

    def _fire(self, fault: Fault) -> None:
        fault.fired_at = time.time()
        kind = fault.kind
        if kind in ("link", "switch"):
            self._hold(fault)
        elif kind == "host":
            killed = self.jobs.kill_host(fault.spec.host, f"fault {fault.index} ({fault.what})")
            fault.detail = "killed " + ", ".join(killed) if killed else "no job process running"
        else:
            self._kill_controller(fault)
        log.info("fault %d fired: %s", fault.index, fault.what)

    def _links_of(self, spec) -> set[frozenset]:
        if spec.kind == "link":
            return {frozenset(spec.link)}
        if spec.kind == "switch":
            return {frozenset((spec.switch, n)) for n in self.fabric.ports.get(spec.switch, {})}
        return set()

    def _hold(self, fault: Fault) -> None:
        """Take the fault's links down (or release its hold on them) and apply the
        resulting state to the interfaces."""
        reason = "link" if fault.kind == "link" else f"switch {fault.spec.switch}"
        before = self._down()
        for link in fault.links:
            held = self.holds.setdefault(link, set())
            (held.add if fault.down else held.discard)(reason)  # others' holds stay
        after = self._down()
        for link in before - after:
            self._set_link(link, up=True)
        for link in after - before:
            self._set_link(link, up=False)
        if fault.down:
            cut = set(paths.cut_off(self.fabric, after)) - set(paths.cut_off(self.fabric, before))
            if cut:
                hosts = sorted({h for pair in cut for h in pair if h in self._hosts_on(after)})
                fault.detail = f"no path left for {len(cut)} host pairs" + (
                    f" ({', '.join(hosts)}: its only link)" if hosts else ""
                )
        elif before == after:
            fault.detail = "still held down by another fault"

    def _hosts_on(self, links: set[frozenset]) -> set[str]:
        return {n for link in links for n in link if n not in self.fabric.switches}

    def _down(self) -> set[frozenset]:
        return {link for link, held in self.holds.items() if held}

    def _set_link(self, link: frozenset, up: bool) -> None:
        """Both interfaces of `link` up or down, each in its own namespace."""
        for d in self.net.topo.directions():
            if frozenset((d.src, d.dst)) == link:
                shell.run(
                    ["ip", "link", "set", "dev", d.interface, "up" if up else "down"],
                    ns_pid=self.net.ns_pid(d.src),
                )

    # ------------------------------------------------------------------ probes

    def _start_probes(self, fault: Fault) -> None:
        """Probe the host pairs the fault can disrupt, from just before it."""
        down = self._down()
        future = down | fault.links
        exposed = paths.exposed_pairs(self.fabric, fault.links, down)
        cut = set(paths.cut_off(self.fabric, future))
        alive = [p for p in exposed if p not in cut]
        busy = {h for job in self.jobs.jobs for h in job.placement.hosts}
        fault.pairs = paths.sample(alive, MAX_PAIRS, self.exp.seed + fault.index, busy)
        by_src: dict[str, list[str]] = {}
        for src, dst in fault.pairs:
            by_src.setdefault(src, []).append(dst)
        for src, dsts in sorted(by_src.items()):
            out = self.dir / f"fault{fault.index}-{src}.fping"
            targets = [self.ips[d] for d in dsts]
            proc: Popen = probe.start(self.net.host(src), targets, out, self.tos)
            self.ledger.add_process(proc.pid)
            fault.probes.append((src, proc, out, dsts))

    def _stop_probes(self, fault: Fault) -> None:
        for _, proc, _, _ in fault.probes:
            probe.stop(proc)
        fault.probe_ended = time.time()
        results, congested = [], 0
        for src, _, out, dsts in fault.probes:
            got = probe.replies(out.read_text())
            for dst in dsts:
                mine = got.get(self.ips[dst], [])
                if probe.baseline_loss(mine, fault.fired_at) > probe.CONGESTED:
                    congested += 1
                    continue
                lost, rec = probe.recovery(mine, fault.fired_at, fault.probe_ended)
                results.append(probe.PairRecovery(src, dst, lost, rec))
        fault.summary = probe.summarize(results, congested)
        if fault.summary["recovery_s"] is not None:
            fault.recovered_at = fault.fired_at + fault.summary["recovery_s"]

    # ------------------------------------------------------------------ controller

    def _kill_controller(self, fault: Fault) -> None:
        controller = self.controller
        if not controller.alive():
            fault.detail = "the controller was not running"
            return
        code = controller.kill()
        fault.detected_at = time.time()  # the harness reaps it at once
        event = {"at_s": self._rel(fault.fired_at), "exit_code": code, "restarted": False}
        self.controller_events.append(event)
        if not self.exp.controller.restart:
            fault.detail = (
                f"controller exited {code}; not restarted (controller.restart: false); "
                "switches keep their flows (fail mode secure)"
            )
            return
        self._restart = threading.Thread(
            target=self._restart_controller, args=(fault, event), daemon=True
        )
        self._restart.start()

    def _restart_controller(self, fault: Fault, event: dict) -> None:
        """A new controller on the same port; recovered once it has programmed every
        switch again (they reconnect by themselves)."""
        controller = self.controller
        try:
            controller.restart()
            controller.wait_ready(timeout_s=60)
        except Exception as exc:  # noted in faults.csv; the run goes on
            fault.detail = f"restart failed: {exc}"
            return
        fault.recovered_at = time.time()
        event.update(restarted=True, resynced_at_s=self._rel(fault.recovered_at))
        fault.detail = f"controller exited {event['exit_code']}; restarted, every switch re-synced"

    # ------------------------------------------------------------------ results

    def finish(self) -> None:
        """Stop what still probes, wait for a restart under way, write faults.csv."""
        if not self.faults:
            return
        if self._restart is not None:
            self._restart.join(timeout=70)
        for fault in self.faults:
            if fault.probes and fault.probe_ended is None:
                if fault.fired_at is None:  # the jobs ended first: nothing to measure
                    for _, proc, _, _ in fault.probes:
                        probe.stop(proc)
                else:
                    self._stop_probes(fault)
        table = read_csv(self.ports_csv)  # the controller's port changes
        ports = [] if table is None else table.astype({"neighbor": str}).to_dict("records")
        for fault in self.faults:
            self._fill_detection(fault, ports)
        with open(self.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, FAULT_COLUMNS)
            writer.writeheader()
            writer.writerows(self._row(f) for f in self.faults)

    def _fill_detection(self, fault: Fault, ports: list[dict]) -> None:
        if fault.fired_at is None:
            fault.detail = fault.detail or "not fired: the jobs had ended"
            return
        if fault.kind in ("link", "switch"):
            state = "down" if fault.down else "up"
            since = self._rel(fault.fired_at)
            seen = [
                float(p["time_s"])
                for p in ports
                if p["state"] == state and float(p["time_s"]) >= since - 0.001
                and frozenset((p["switch"], p["neighbor"])) in fault.links
            ]  # fmt: skip
            fault.detected_at = self.t0 + min(seen) if seen else None
            if not fault.down and seen:
                fault.recovered_at = self.t0 + min(seen)  # routes back over the link
        elif fault.kind == "host":
            self._fill_host(fault)

    def _fill_host(self, fault: Fault) -> None:
        """Detected when the harness saw the process end; recovered when its server
        went on without it (on_failure: continue)."""
        for job in self.jobs.jobs:
            for proc in job.processes:
                if proc.config.host == fault.spec.host and proc.label in job.killed:
                    fault.detected_at = proc.ended_at
                    lost = _lost_records(self.jobs.run_dir, job.spec.name, proc)
                    if lost:
                        fault.recovered_at = min(r["time"] for r in lost)
                        fault.detail += f"; the server went on without it: {lost[0]['reason']}"
                    elif job.status == "failed":
                        fault.detail += f"; job {job.spec.name} failed (on_failure: fail)"

    def _row(self, fault: Fault) -> dict:
        s = fault.summary
        detail = fault.detail
        if s:
            detail = "; ".join(filter(None, [detail, _probe_detail(s)]))
        recovery = s.get("recovery_s") if s else None
        if recovery is None and fault.recovered_at and fault.fired_at:
            recovery = round(fault.recovered_at - fault.fired_at, 4)
        return {
            "at_s": fault.spec.at_s,
            "time_s": self._rel(fault.fired_at),
            "what": fault.what,
            "detected_at_s": self._rel(fault.detected_at),
            "recovered_at_s": self._rel(fault.recovered_at),
            "recovery_s": recovery,
            "probed_pairs": s.get("probed_pairs") if s else None,
            "disrupted_pairs": s.get("disrupted_pairs") if s else None,
            "recovery_p50_s": s.get("recovery_p50_s") if s else None,
            "detail": detail,
        }

    def _rel(self, t: float | None) -> float | None:
        return None if t is None else round(t - self.t0, 4)


def _probe_detail(s: dict) -> str:
    if not s["probed_pairs"] and s["congested_pairs"]:
        return (
            f"no recovery measured: all {s['congested_pairs']} pairs probed lost over "
            f"{probe.CONGESTED:.0%} of their probes before the fault"
        )
    if not s["probed_pairs"]:
        return "no pair left to probe"
    text = f"{s['disrupted_pairs']} of {s['probed_pairs']} probed pairs lost probes"
    if s["congested_pairs"]:
        text += (
            f" ({s['congested_pairs']} more left out: they lost over "
            f"{probe.CONGESTED:.0%} of their probes before the fault)"
        )
    if s["unrecovered_pairs"]:
        text += f", {s['unrecovered_pairs']} not through again within {probe.WINDOW_S:g} s"
    if s["worst_pair"]:
        text += f"; slowest {s['worst_pair']}"
    return text


def _lost_records(run_dir: Path, job: str, proc) -> list[dict]:
    """The servers' worker_lost records of `proc` (a worker)."""
    from testbed.results.read import read_jsonl

    found = []
    for path in sorted(RunPaths(run_dir).job(job).glob(records_name("server*"))):
        found += [
            r for r in read_jsonl(path)
            if r.get("type") == "worker_lost" and r.get("worker") == proc.config.rank
        ]  # fmt: skip
    return found
