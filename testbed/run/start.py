"""Start: the network (with the forkserver importing torch meanwhile), then what runs
on it: jobs, background traffic and faults, each given only the parts of the testbed
it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass

from testbed.faults.runner import FaultRunner
from testbed.jobs.forkserver import ForkServer
from testbed.jobs.launch import PROCESS_ENV, JobRunner
from testbed.layout import RunPaths
from testbed.progress import RunProgress
from testbed.results.metadata import Metadata
from testbed.run.build import Testbed
from testbed.spec.schema import Experiment
from testbed.traffic.runner import TrafficRunner


@dataclass
class Work:
    """What runs on the network of one run; each part is None until it is started
    (teardown stops whichever exist)."""

    forkserver: ForkServer | None = None
    jobs: JobRunner | None = None
    traffic: TrafficRunner | None = None
    faults: FaultRunner | None = None


def plan_work(exp: Experiment, paths: RunPaths) -> Work:
    """The run's work, nothing started: a forkserver when built-in jobs fork from one
    (a cluster's processes start on their own servers, each a fresh interpreter)."""
    builtin = [job for job in exp.jobs if not job.is_command]
    if exp.launcher == "fork" and builtin and exp.cluster is None:
        # preloads every (dataset, seed) its jobs train on
        datasets = [(job.dataset, exp.seed) for job in builtin]
        return Work(ForkServer(datasets, paths.log("forkserver"), {**os.environ, **PROCESS_ENV}))
    return Work()


def start(testbed: Testbed, work: Work, meta: Metadata, progress: RunProgress, source: str) -> None:
    """Bring the network up (the forkserver imports torch meanwhile), then make the job,
    traffic and fault runners; jobs and traffic start later, at their offsets
    (`testbed.run.observe`)."""
    exp, net, ledger, run_dir = testbed.exp, testbed.network, testbed.ledger, testbed.run_dir
    if work.forkserver:
        work.forkserver.start(ledger)
    testbed.start()
    meta.update(**testbed.timings, reachability=testbed.reachability,
                network_profile=net.profile, pmd_maxsleep_us=net.pmd_maxsleep_us)  # fmt: skip
    cluster = net.cluster_report()
    if cluster is not None:
        meta.update(cluster=cluster)
    if work.forkserver:
        work.forkserver.wait_ready()
        ready_s = round(work.forkserver.ready_at - testbed.t0, 3)
        meta.update(forkserver_ready_s=ready_s)
        progress.phase(f"forkserver ready: torch and datasets loaded at {ready_s} s")
    placements = testbed.placements
    work.jobs = JobRunner(exp, net, placements, run_dir, ledger, work.forkserver, source)
    meta.update(trees=work.jobs.tree_report())
    work.traffic = TrafficRunner(exp, net, placements, run_dir, ledger, source)
    if exp.traffic:
        meta.update(traffic=work.traffic.plan())
    work.faults = FaultRunner(exp, net, testbed.controller, ledger, work.jobs, run_dir, testbed.t0)
