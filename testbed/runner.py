"""One experiment, start to finish: spec -> topology -> network -> controller -> jobs
-> results, with teardown of everything the run created however it ends.

Order of a run:
  1. preflight (root, OVS, free names, platform features) — nothing created yet
  2. run directory, resolved spec, metadata, ledger
  3. controller process, then the Mininet network (switches connect at once)
  4. wait for "all switches programmed", check all-pairs reachability
  5. launch jobs at their start offsets, follow their progress
  6. stop processes, network; release the ledger; write CSVs and final metadata
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from testbed import preflight
from testbed.control import ControllerProcess
from testbed.errors import TestbedError
from testbed.jobs.launch import JobRunner
from testbed.jobs.placement import place
from testbed.ledger import Ledger
from testbed.network.emulated import EmulatedNetwork
from testbed.network.reach import unreachable_pairs
from testbed.platform import probe
from testbed.progress import RunProgress
from testbed.results.metadata import Metadata, now_utc
from testbed.results.rundir import create_run_dir
from testbed.results.tables import write_tables
from testbed.spec.schema import Experiment
from topologies import build_topology

log = logging.getLogger("testbed")
POLL_S = 0.5


class Interrupted(Exception):
    """SIGTERM (or SIGINT) asked the run to stop."""


@dataclass
class RunResult:
    run_dir: Path
    status: str
    error: str
    jobs: pd.DataFrame


def run_experiment(exp: Experiment, source: str, out: str | None = None,
                   progress: RunProgress | None = None) -> RunResult:
    """Run `exp` (validated from `source`) and return where its results are."""
    topo = build_topology(exp.topology)
    platform = probe()
    preflight.check(exp, source, topo, platform)
    run_dir = create_run_dir(exp.name, out)
    _log_to(run_dir / "logs" / "harness.log")
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    placements = place(exp, topo)
    ledger = Ledger.open(f"{exp.name}-{run_dir.name}-{time.time_ns() % 10**6}", str(run_dir))
    datapath = platform.datapath(exp.network.datapath)
    meta = Metadata(
        run_dir, name=exp.name, run_id=ledger.run_id, spec_file=source,
        versions=platform.versions,
        platform={"datapath": datapath, "ovs_kernel_module": platform.ovs_kernel_module,
                  "netem": platform.netem, "nftables_egress": platform.nftables_egress,
                  "tcp_congestion_control": sorted({j.transport.congestion_control
                                                    for j in exp.jobs})},
        placement={name: {"servers": list(p.servers), "workers": list(p.workers)}
                   for name, p in placements.items()},
        hosts={name: info.ip for name, info in topo.host_info.items()},
    )
    progress = progress or RunProgress()
    controller = ControllerProcess(topo.to_json(), exp.controller.routing,
                                   exp.controller.priority, run_dir, ledger)
    network = EmulatedNetwork(topo, datapath, 0, ledger)
    jobs: JobRunner | None = None
    status, error, t0 = "failed", "", time.time()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with progress:
            network.controller_port = controller.start()
            progress.phase(f"controller listening on 127.0.0.1:{network.controller_port}")
            network.start()
            report = controller.wait_ready()
            meta.update(network_ready_s=round(time.time() - t0, 3))
            progress.phase(f"network ready: {len(topo.host_info)} hosts, "
                           f"{report['switches']} switches programmed ({datapath} datapath)")
            _check_reachability(network, progress)
            meta.update(reachable_s=round(time.time() - t0, 3))
            jobs = JobRunner(exp, network, placements, run_dir, ledger)
            _follow(jobs, progress, run_dir)
            failed = [j for j in jobs.jobs if j.status != "ok"]
            status = "failed" if failed else "ok"
            error = "; ".join(f"{j.spec.name}: {j.error}" for j in failed)
    except (KeyboardInterrupt, Interrupted):
        status, error = "interrupted", "interrupted by signal"
    except TestbedError as exc:
        error = str(exc)
    except Exception as exc:  # a bug: keep the traceback in the log, results on disk
        log.error("unexpected error\n%s", traceback.format_exc())
        error = f"unexpected {type(exc).__name__}: {exc} (traceback in logs/harness.log)"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip teardown
        try:
            _teardown(jobs, controller, network, ledger)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    frames = write_tables(run_dir, jobs.summaries() if jobs else [], t0)
    meta.update(status=status, error=error, ended_utc=now_utc(),
                duration_s=round(time.time() - t0, 3))
    log.info("run %s: %s %s", run_dir, status, error)
    return RunResult(run_dir, status, error, frames["jobs"])


def _check_reachability(network: EmulatedNetwork, progress: RunProgress) -> None:
    failures = unreachable_pairs(network)
    if failures:
        sample = ", ".join(f"{a}->{b}" for a, b in failures[:5])
        raise TestbedError(f"{len(failures)} host pairs unreachable after programming: {sample}")
    n = len(network.topo.host_info)
    progress.phase(f"all {n * (n - 1)} host pairs reachable")


def _follow(jobs: JobRunner, progress: RunProgress, run_dir: Path) -> None:
    for job in jobs.jobs:
        records = run_dir / "raw" / job.spec.name / "worker0.jsonl"
        progress.add_job(job.spec.name, job.spec.iterations, records)
    start = time.monotonic()
    while True:
        for job in jobs.start_due(time.monotonic() - start):
            progress.phase(f"job {job.spec.name} started on {' '.join(job.placement.hosts)}")
        for job in jobs.poll():
            colour = "green" if job.status == "ok" else "red"
            progress.phase(f"job {job.spec.name} [{colour}]{job.status}[/{colour}] {job.error}")
        for job in jobs.jobs:
            progress.update_job(job.spec.name, job.status)
        if jobs.all_done:
            return
        time.sleep(POLL_S)


def _teardown(jobs, controller, network, ledger) -> None:
    """Stop everything in reverse order of creation; the ledger catches the rest."""
    steps = [
        ("jobs", lambda: jobs and jobs.stop_all()),
        ("controller", controller.stop),
        ("network", network.stop),
    ]
    for what, step in steps:
        try:
            step()
        except Exception:  # keep tearing down; the ledger removes what is left
            log.error("teardown of %s failed\n%s", what, traceback.format_exc())
    leftover = ledger.release()
    if leftover:
        log.warning("ledger removed leftovers: %s", ", ".join(leftover))


def _raise_interrupted(signum, frame):
    raise Interrupted(f"signal {signum}")


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("testbed")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
