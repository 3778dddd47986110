"""One experiment, start to finish: spec -> topology -> network -> controller -> jobs
-> results, with teardown of everything the run created however it ends.

Order of a run:
  1. preflight (root, OVS, free names, platform features) — nothing created yet
  2. run directory, resolved spec, metadata, ledger
  3. the forkserver (it imports torch meanwhile), the controller process, then the
     Mininet network (switches connect at once)
  4. wait for "all switches programmed", check all-pairs reachability
  5. sample links into links.csv; launch jobs at their start offsets, follow them
  6. stop processes, forkserver, sampler, network; release the ledger; write CSVs and
     metadata

`Testbed` (steps 3-4 and their teardown) is usable on its own: the link-fidelity
tests and benchmarks use it to get a ready network without training jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from controllers.contract import JobRecord, JobsDoc
from controllers.cookies import TIERS
from testbed import preflight
from testbed.control import ControllerProcess
from testbed.errors import TestbedError
from testbed.faults.runner import FaultRunner
from testbed.jobs.forkserver import ForkServer
from testbed.jobs.launch import PROCESS_ENV, JobRunner
from testbed.jobs.placement import Placement, place
from testbed.ledger import Ledger, summarize_removed
from testbed.network import reach
from testbed.network.cluster import controller_address
from testbed.network.counters import job_tier_bytes
from testbed.network.emulated import EmulatedNetwork, LinkEmulation
from testbed.network.monitor import LinkMonitor
from testbed.network.plane import Plane
from testbed.network.tc import CLASS_DSCP
from testbed.platform import Platform, probe
from testbed.progress import RunProgress
from testbed.results.fidelity import CpuSampler, assess
from testbed.results.metadata import Metadata, now_utc
from testbed.results.rundir import create_run_dir, hand_over
from testbed.results.tables import TIER_BYTES, write_tables
from testbed.runlock import RunLock
from testbed.spec import validate
from testbed.spec.schema import Experiment
from testbed.traffic.runner import TrafficRunner
from testbed.training.size import total_bytes
from topologies import GraphTopo, build_topology

log = logging.getLogger("testbed")
# How often the harness checks its jobs: a job's end is seen POLL_S/2 late on average,
# which every run pays; a poll reads only exit codes and the new bytes of one file.
POLL_S = 0.1
# From the network built to every switch programmed; a cluster's remote switches
# connect over ssh-built tunnels, which take minutes under TCG.
READY_TIMEOUT_S = {"one machine": 60, "cluster": 180}


class Interrupted(Exception):
    """SIGTERM asked the run to stop."""


@dataclass
class RunResult:
    run_dir: Path
    status: str
    error: str
    jobs: pd.DataFrame
    fidelity: dict | None = None


class Testbed:
    """A ready network for one run: controller + Mininet + link sampling, torn down on exit.

    ``with Testbed(...) as tb:`` returns once every switch is programmed and every
    host pair is reachable; leaving the block removes everything the ledger lists.
    """

    def __init__(
        self,
        exp: Experiment,
        topo: GraphTopo,
        platform: Platform,
        run_dir: Path,
        progress: RunProgress | None = None,
        lock: RunLock | None = None,
    ):
        self.exp, self.topo, self.platform, self.run_dir = exp, topo, platform, run_dir
        self.lock = lock or RunLock()  # released at teardown (prepare takes it)
        self.progress = progress or RunProgress()
        self.t0 = time.time()
        # On a cluster the controller listens where every server's switches reach it
        # (found first: a server with no route fails the run before it records anything).
        self.address = "127.0.0.1"
        if exp.cluster is not None:
            self.address = controller_address(list(exp.cluster.servers))
        self.ledger = Ledger.open(
            f"{exp.name}-{run_dir.name}-{time.time_ns() % 10**6}", str(run_dir)
        )
        self.datapath = platform.datapath(exp.network.datapath)
        self.ports, self.ports_reason = platform.ports(
            exp.network.ports, self.datapath, len(topo.interface_names())
        )
        self.loss_backend, self.loss_reason = platform.loss_backend(exp.network.loss_backend)
        if exp.cluster is not None:  # tc on every server (testbed.network.cluster_net)
            self.loss_backend, self.loss_reason = "netem", "a cluster: netem on every server"
        emulation = LinkEmulation(
            loss_backend=self.loss_backend,
            seed=exp.seed if platform.netem_seed else None,
            bands=exp.switch_bands(),
            burst_ms=exp.network.shaper_burst_ms,
        )
        self.placements = place(exp, topo)
        jobs = controller_jobs(
            exp, self.placements, self.t0, run_dir / "controller.csv", run_dir / "raw" / "ports.csv"
        )
        self.controller = ControllerProcess(
            topo.document(), jobs, exp.controller.routing, run_dir, self.ledger, self.address
        )
        if exp.cluster is None:
            self.network = EmulatedNetwork(
                topo, self.datapath, 0, self.ledger, emulation, Plane(self.ports)
            )
        else:
            from testbed.network.cluster_net import ClusterNetwork  # Mininet's examples

            self.network = ClusterNetwork(
                topo, exp.cluster, self.address, 0, self.ledger, self.datapath, emulation
            )
        self.monitor: LinkMonitor | None = None
        self.timings: dict[str, float] = {}
        self.reachability: dict = {}  # what the reachability check covered
        self.closed = False
        self._inherited: dict[int, object] = {}  # signal -> handler before `start`
        self.teardown_errors: list[str] = []  # what `_attempt` caught, for the run's error
        self.teardown_s: float | None = None  # how long `close` took

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Testbed:
        """Bring the network up; on any failure tear down what exists and re-raise.

        From here until `close`, SIGINT raises KeyboardInterrupt and SIGTERM raises
        `Interrupted`, so both end in the same teardown. Both handlers are installed
        whatever was inherited: a shell starts a background job (``cmd &``) with SIGINT
        ignored, and Python then never raises KeyboardInterrupt on its own.
        """
        self._inherited = {
            signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
            signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupted),
        }
        try:
            self.network.controller_port = self.controller.start()
            port = self.network.controller_port
            self.progress.phase(f"controller listening on {self.address}:{port}")
            self.network.start()
            report = self.controller.wait_ready(
                READY_TIMEOUT_S["one machine" if self.exp.cluster is None else "cluster"]
            )
            self.timings["network_ready_s"] = round(time.time() - self.t0, 3)
            self.progress.phase(
                f"network ready: {len(self.topo.host_info)} hosts, {report.switches} switches "
                f"programmed ({self.datapath} datapath, {self.ports} ports, "
                f"loss via {self.loss_backend})"
            )
            self._check_reachability()
            self.timings["reachable_s"] = round(time.time() - self.t0, 3)
            self.network.enable_loss()
            self.monitor = LinkMonitor(
                self.network,
                self.run_dir / "links.csv",
                self.exp.results.sample_s,
                self.t0,
                classes_path=self.run_dir / "link_classes.csv",
                hosts=self._watched_hosts(),
            )
            self.monitor.start()
        except BaseException:
            self.close()
            raise
        return self

    def cluster_report(self) -> dict:
        """metadata.json's `cluster`: each server's hosts and the tunnelled links."""
        net = self.network
        hosts: dict[str, list[str]] = {server: [] for server in self.exp.cluster.servers}
        for name in self.topo.host_names():
            hosts[net.server_of(name)].append(name)
        tunnels = [f"{a}-{b}" for a, b in net.cross_links()]
        return {
            "servers": list(self.exp.cluster.servers),
            "controller_address": self.address,
            "placement": self.exp.cluster.placement,
            "tunnel": self.exp.cluster.tunnel,
            "hosts": hosts,
            "tunnelled_links": tunnels,
            "launcher": "exec on each host's server (testbed.jobs.remote)",
        }

    def _watched_hosts(self) -> list[str] | None:
        """Hosts whose egress queues the link monitor reads: all of them, or on a large
        fabric (more than reach.FULL_CHECK_MAX_HOSTS hosts) those jobs and traffic use."""
        names = self.topo.host_names()
        if self.exp.cluster is not None:
            return []  # one ssh call per host and sample is too many: queues unread
        if len(names) <= reach.FULL_CHECK_MAX_HOSTS:
            return None
        if any(t.kind == "flows" and not isinstance(t.hosts, tuple) for t in self.exp.traffic):
            return None  # "free" or "all": most hosts carry traffic
        used = {h for p in self.placements.values() for h in p.hosts}
        for t in self.exp.traffic:
            used |= set(t.hosts) if t.kind == "flows" else {t.src, t.dst}
        return [h for h in names if h in used]

    def close(self) -> list[dict]:
        """Stop sampling, controller and network; release the ledger. Returns the link
        report (empty if sampling never started). Only the first call does anything."""
        if self.closed:
            return []
        self.closed = True
        start = time.monotonic()
        try:
            with _no_sigint():  # a second Ctrl-C must not cut the teardown short
                return self._teardown()
        finally:
            self.teardown_s = round(time.monotonic() - start, 3)
            for signum, handler in self._inherited.items():
                signal.signal(signum, handler)

    def _teardown(self) -> list[dict]:
        links = self._attempt("link monitor", self._stop_monitor) or []
        self._attempt("controller", self.controller.stop)
        self._attempt("network", self.network.stop)
        # whatever a failed step above left behind
        leftover = self._attempt("ledger's leftovers", self.ledger.release) or []
        if leftover:
            log.warning("ledger removed leftovers: %s", summarize_removed(leftover))
        self.lock.release()
        return links

    def _attempt(self, what: str, step):
        """Run one teardown step; on failure log it, note it for the run's error, and
        carry on with the next (one failed step must not leave the rest standing)."""
        try:
            return step()
        except Exception as exc:
            log.error("teardown of %s failed\n%s", what, traceback.format_exc())
            self.teardown_errors.append(f"stopping the {what}: {_describe(exc)}")
            return None

    def _stop_monitor(self) -> list[dict]:
        """Final sample, then the per-direction report for metadata.json."""
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return []
        monitor.stop()
        return monitor.report()

    def save_tier_bytes(self, path: Path) -> None:
        """Write the bytes each job put on each tier (the controller's per-job counters)
        to `path`; a failure is logged, the run goes on to teardown."""
        try:
            tiers = sorted({link.tier for link in self.topo.link_info}, key=TIERS.index)
            jobs = [job.name for job in self.exp.jobs]
            counted = job_tier_bytes(self.topo.switch_info, jobs, tiers, self.network)
            path.write_text(json.dumps({"tiers": tiers, "jobs": counted}, indent=1) + "\n")
        except Exception:
            log.error("per-job tier bytes not read\n%s", traceback.format_exc())

    def _check_reachability(self) -> None:
        plan = reach.probe_plan(self.topo.host_names(), self.exp.seed)
        self.reachability = reach.describe(plan)
        failures = reach.unreachable_pairs(self.network, plan)
        if failures:
            sample = ", ".join(f"{a}->{b}" for a, b in failures[:5])
            raise TestbedError(
                f"{len(failures)} host pairs unreachable after programming: {sample}"
            )
        r = self.reachability
        if r["mode"] == "all pairs":
            self.progress.phase(f"all {r['pairs']} host pairs reachable")
        else:
            self.progress.phase(
                f"{r['pairs']} sampled host pairs reachable ({r['targets_per_host']} per host, "
                f"of {r['all_pairs']:,}; see reachability in metadata.json)"
            )


def controller_jobs(
    exp: Experiment,
    placements: dict[str, Placement],
    t0: float,
    events_csv: Path,
    ports_csv: Path | None = None,
) -> JobsDoc:
    """What the controller's priority policy needs to know (the contract's jobs document)."""
    policy = exp.controller.priority
    return JobsDoc(
        policy=policy,
        order=exp.controller.priority_order,
        seed=exp.seed,  # for a random order
        classes=exp.controller.priority_classes,
        dscp=tuple(CLASS_DSCP),
        poll_ms=exp.controller.poll_ms,
        thresholds_bytes=tuple(exp.controller.thresholds_bytes()),
        t0=t0,
        events_csv=str(events_csv),
        # the policy's state, for a restarted controller to resume (controllers/priority.py)
        state_json=str(events_csv.with_name("raw") / "controller_state.json"),
        ports_csv=str(ports_csv) if ports_csv else None,  # port changes, for faults.csv
        jobs=tuple(
            JobRecord(
                name=job.name,
                hosts=tuple(placements[job.name].hosts),
                priority=job.priority,
                # MLNET's "communication cost": the model bytes the job will send
                total_bytes=total_bytes(job) if policy == "smallest-first" else 0,
            )
            for job in exp.jobs
        ),
    )


def prepare(
    exp: Experiment, source: str, out: str | None = None, progress: RunProgress | None = None
) -> Testbed:
    """Preflight, then a fresh run directory (resolved spec, harness log) and an
    unstarted `Testbed` for it. Nothing is created on the system before preflight."""
    topo = build_topology(exp.topology)
    platform = probe()
    lock = RunLock()
    lock.acquire(exp.name)  # first: a second run refuses here, not at a name collision
    try:
        preflight.check(exp, source, topo, platform)
        run_dir = create_run_dir(exp.name, out)
        lock.describe(run_dir=str(run_dir))
        _log_to(run_dir / "logs" / "harness.log")
        spec = yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False)
        (run_dir / "spec.yaml").write_text(spec)
        return Testbed(exp, topo, platform, run_dir, progress, lock)
    except BaseException:
        lock.release()
        raise


def run_experiment(
    exp: Experiment, source: str, out: str | None = None, progress: RunProgress | None = None
) -> RunResult:
    """Run `exp` (validated from `source`) and return where its results are."""
    progress = progress or RunProgress()
    testbed = prepare(exp, source, out, progress)
    platform, topo, run_dir = testbed.platform, testbed.topo, testbed.run_dir
    placements = testbed.placements
    builtin = [job for job in exp.jobs if not job.is_command]
    meta = Metadata(
        run_dir,
        name=exp.name,
        run_id=testbed.ledger.run_id,
        spec_file=source,
        versions=platform.versions,
        platform={
            "datapath": testbed.datapath,
            "ports": testbed.ports,
            "ports_reason": testbed.ports_reason,
            "ovs_kernel_module": platform.ovs_kernel_module,
            "netem": platform.netem,
            "nftables_egress": platform.nftables_egress,
            "loss_backend": testbed.loss_backend,
            "loss_backend_reason": testbed.loss_reason,
            "loss_seeded": _seeding(testbed.loss_backend, platform),
            "tcp_congestion_control": sorted({j.transport.congestion_control for j in builtin}),
        },
        placement={
            name: {"servers": list(p.servers), "workers": list(p.workers)}
            for name, p in placements.items()
        },
        hosts={name: info.ip for name, info in topo.host_info.items()},
        t0_unix=testbed.t0,
    )
    jobs: JobRunner | None = None
    traffic: TrafficRunner | None = None
    faults: FaultRunner | None = None
    cpu: CpuSampler | None = None
    # A cluster's processes start on their own servers, each a fresh interpreter.
    forking = exp.launcher == "fork" and builtin and exp.cluster is None
    forkserver = _forkserver(exp, run_dir) if forking else None
    links: list[dict] = []
    status, error = "failed", ""
    try:
        with progress:
            try:
                if forkserver:  # imports torch while the network is being built
                    forkserver.start(testbed.ledger)
                testbed.start()
                meta.update(**testbed.timings, reachability=testbed.reachability,
                            network_profile=testbed.network.profile,
                            pmd_maxsleep_us=testbed.network.pmd_maxsleep_us)  # fmt: skip
                if exp.cluster is not None:
                    meta.update(cluster=testbed.cluster_report())
                if forkserver:
                    forkserver.wait_ready()
                    ready_s = round(forkserver.ready_at - testbed.t0, 3)
                    meta.update(forkserver_ready_s=ready_s)
                    progress.phase(f"forkserver ready: torch and datasets loaded at {ready_s} s")
                jobs = JobRunner(
                    exp, testbed.network, placements, run_dir, testbed.ledger, forkserver, source
                )
                meta.update(trees=jobs.tree_report())
                traffic = TrafficRunner(
                    exp, testbed.network, placements, run_dir, testbed.ledger, source
                )
                if exp.traffic:
                    meta.update(traffic=traffic.plan())
                faults = FaultRunner(exp, testbed, jobs, run_dir)
                cpu = CpuSampler(
                    run_dir / "cpu.csv",
                    exp.results.sample_s,
                    testbed.t0,
                    lambda: _process_groups(testbed, forkserver, jobs, traffic),
                )
                cpu.start()
                _follow(jobs, traffic, faults, progress)
                failed = [j for j in jobs.jobs if j.status != "ok"]
                status = "failed" if failed else "ok"
                error = "; ".join(f"{j.spec.name}: {j.error}" for j in failed)
            finally:
                with _no_sigint():  # each step guarded: the network must come down
                    steps = [
                        ("cpu sampler", cpu and cpu.stop),
                        ("jobs", jobs and jobs.stop_all),
                        ("traffic", traffic and traffic.stop_all),
                        ("faults", faults and (lambda: _finish_faults(faults, meta))),
                        ("forkserver", forkserver and forkserver.stop),
                        # the network came up and jobs ran on it:
                        ("tier counters", jobs and (lambda: testbed.save_tier_bytes(
                            run_dir / "raw" / TIER_BYTES))),
                    ]  # fmt: skip
                    for what, step in steps:
                        if step:
                            testbed._attempt(what, step)
                links = testbed.close()
    except (KeyboardInterrupt, Interrupted):
        status, error = "interrupted", "interrupted by signal"
    except TestbedError as exc:
        error = str(exc)
    except OSError as exc:  # a full disk, a results directory made read-only meanwhile
        log.error("cannot write results\n%s", traceback.format_exc())
        error = f"cannot write results: {_describe(exc)}"
    except Exception as exc:  # a bug: keep the traceback in the log, results on disk
        log.error("unexpected error\n%s", traceback.format_exc())
        error = f"unexpected {type(exc).__name__}: {exc} (traceback in logs/harness.log)"
    # written with the final metadata
    meta.data["teardown_s"] = testbed.teardown_s
    meta.data["teardown_profile"] = testbed.network.teardown_profile
    if testbed.teardown_errors:
        status = "interrupted" if status == "interrupted" else "failed"
        error = "; ".join(filter(None, [error, *testbed.teardown_errors]))
    frames, fidelity, status, error = _finish(run_dir, links, meta, status, error, testbed.t0)
    hand_over(run_dir)
    return RunResult(run_dir, status, error, frames.get("jobs", pd.DataFrame()), fidelity)


def _finish(run_dir, links, meta, status, error, t0) -> tuple[dict, dict | None, str, str]:
    """The tables, the fidelity verdict and the final metadata, after teardown. On a
    full disk, whatever fits is kept and the error says what did not."""
    frames, fidelity = {}, None
    try:
        frames = write_tables(run_dir)
        fidelity = assess(run_dir, links, frames["param_divergence"])
    except Exception as exc:  # a full disk, or records it left half-written
        log.error("tables not written\n%s", traceback.format_exc())
        error = "; ".join(filter(None, [error, f"tables not written: {_describe(exc)}"]))
        status = "interrupted" if status == "interrupted" else "failed"
    try:
        meta.update(status=status, error=error, ended_utc=now_utc(), links=links,
                    fidelity=fidelity, duration_s=round(time.time() - t0, 3))  # fmt: skip
    except OSError as exc:
        log.error("metadata.json not updated: %s", exc.strerror)
    log.info("run %s: %s %s", run_dir, status, error)
    return frames, fidelity, status, error


def _finish_faults(faults: FaultRunner, meta: Metadata) -> None:
    """faults.csv, and the controller's deaths and restarts in metadata.json."""
    faults.finish()
    if faults.controller_events:
        meta.update(controller_deaths=faults.controller_events)


def _describe(exc: BaseException) -> str:
    """An exception as one line: an OSError by its reason and file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _process_groups(
    testbed: Testbed, forkserver, jobs: JobRunner, traffic: TrafficRunner
) -> dict[str, list[int]]:
    """The run's own process groups by name, for cpu.csv (each was started in a group
    of its own: the ledger kills them the same way)."""
    groups = {}
    if testbed.controller.popen is not None:
        groups["controller"] = [testbed.controller.popen.pid]
    if forkserver is not None and forkserver.proc is not None:
        groups["forkserver"] = [forkserver.proc.pid]
    for job in jobs.jobs:
        groups[f"job:{job.spec.name}"] = [p.popen.pid for p in job.processes if p.popen]
    for entry in traffic.entries:
        if entry.procs:
            groups[f"traffic:{entry.index}"] = [popen.pid for popen, _, _ in entry.procs]
    return groups


def _forkserver(exp: Experiment, run_dir: Path) -> ForkServer:
    """The run's forkserver, preloading every (dataset, seed) its jobs train on."""
    return ForkServer(
        [(job.dataset, exp.seed) for job in exp.jobs if not job.is_command],
        run_dir / "logs" / "forkserver.log",
        {**os.environ, **PROCESS_ENV},
    )


def quiet() -> RunProgress:
    """Progress that prints nothing (for scripts that print their own tables)."""
    return RunProgress(Console(stderr=True, quiet=True))


def run_spec(spec: dict, out: str | Path, source: str = "script") -> RunResult:
    """Validate a spec given as data and run it without terminal output.

    For benchmarks and scripts: an interrupted run has already torn itself down,
    and then KeyboardInterrupt stops the caller too.
    """
    exp = validate(spec, source)
    result = run_experiment(exp, source, out=str(out), progress=quiet())
    if result.status == "interrupted":
        raise KeyboardInterrupt
    return result


def bare_testbed(spec: dict, out: str | Path, source: str = "script") -> Testbed:
    """An unstarted `Testbed` for a spec given as data, for probing links without jobs:
    ``with bare_testbed(spec, out) as tb: ... tb.network ...``."""
    return prepare(validate(spec, source), source, out=str(out), progress=quiet())


def _seeding(backend: str, platform: Platform) -> str:
    if backend == "netem":
        return (
            "netem seed per link direction"
            if platform.netem_seed
            else "not seeded: this tc/kernel has no netem seed option"
        )
    return "not seeded: nftables numgen uses the kernel's PRNG"


def _follow(
    jobs: JobRunner, traffic: TrafficRunner, faults: FaultRunner, progress: RunProgress
) -> None:
    """Start jobs and traffic and fire faults when due and show progress, until every
    job has ended and every timed traffic entry has run its duration_s."""
    for job in jobs.jobs:
        records = Path(job.processes[-1].config.records).with_name("worker0.jsonl")
        total = None if job.spec.is_command else job.spec.iterations  # a script's: unknown
        progress.add_job(job.spec.name, total, records)
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        traffic.check()
        for entry in traffic.start_due(elapsed):
            progress.phase(
                f"traffic {entry.index} ({entry.spec.kind}) started on {len(entry.hosts)} hosts"
            )
        for job in jobs.start_due(elapsed):
            progress.phase(f"job {job.spec.name} started on {' '.join(job.placement.hosts)}")
        for fault in faults.step(elapsed):
            detail = f": {fault.detail}" if fault.detail else ""
            progress.phase(f"fault {fault.index} at {elapsed:.1f} s: {fault.what}{detail}")
        for job in jobs.poll():
            colour = "green" if job.status == "ok" else "red"
            detail = f": {job.error}" if job.error else ""
            progress.phase(f"job {job.spec.name} [{colour}]{job.status}[/{colour}]{detail}")
        for job in jobs.jobs:
            progress.update_job(job.spec.name, job.status)
        if jobs.all_done and not traffic.timed_pending(time.monotonic() - start):
            return
        time.sleep(POLL_S)


_interrupt_pending = threading.Event()


@contextlib.contextmanager
def _no_sigint():
    """Hold SIGINT off while teardown runs (it must finish), remembering one that came:
    a study stops after this run instead of starting the next (`interrupt_pending`)."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _interrupt_pending.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_pending() -> bool:
    """Whether a SIGINT arrived while teardown held it off (and clear the mark)."""
    pending = _interrupt_pending.is_set()
    _interrupt_pending.clear()
    return pending


def _raise_interrupted(signum, frame):
    raise Interrupted(f"signal {signum}")


def _log_to(path: Path) -> None:
    # A full disk must not print a traceback per log line; the run reports it once.
    logging.raiseExceptions = False
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("testbed")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
