"""Observe: start jobs and traffic at their offsets, fire faults when due, and show
progress until every job has ended, sampling the CPU meanwhile (cpu.csv); the run's
status comes from its jobs."""

from __future__ import annotations

import time
from pathlib import Path

from testbed.layout import records_name
from testbed.progress import RunProgress
from testbed.results.fidelity import CpuSampler
from testbed.run.build import Testbed
from testbed.run.signals import no_sigint
from testbed.run.start import Work

# How often the harness checks its jobs: a job's end is seen POLL_S/2 late on average,
# which every run pays; a poll reads only exit codes and the new bytes of one file.
POLL_S = 0.1


def observe(testbed: Testbed, work: Work, progress: RunProgress) -> tuple[str, str]:
    """Follow the run to its end, sampling CPU; return its (status, error) from the jobs'."""
    cpu = CpuSampler(
        testbed.paths.table("cpu"),
        testbed.exp.results.sample_s,
        testbed.t0,
        lambda: process_groups(testbed, work),
    )
    cpu.start()
    try:
        follow(work, progress)
    finally:
        with no_sigint():  # the last sample is written whatever ended the run
            testbed.attempt("cpu sampler", cpu.stop)
    failed = [j for j in work.jobs.jobs if j.status != "ok"]
    error = "; ".join(f"{j.spec.name}: {j.error}" for j in failed)
    return ("failed" if failed else "ok"), error


def follow(work: Work, progress: RunProgress) -> None:
    """Start jobs and traffic and fire faults when due and show progress, until every
    job has ended and every timed traffic entry has run its duration_s."""
    jobs, traffic = work.jobs, work.traffic
    for job in jobs.jobs:
        records = Path(job.processes[-1].config.records).with_name(records_name("worker0"))
        total = None if job.spec.is_command else job.spec.iterations  # a script's: unknown
        progress.add_job(job.spec.name, total, records)
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        traffic.check()
        for entry in traffic.start_due(elapsed):
            hosts = len(entry.hosts)
            progress.phase(f"traffic {entry.index} ({entry.spec.kind}) started on {hosts} hosts")
        for job in jobs.start_due(elapsed):
            progress.phase(f"job {job.spec.name} started on {' '.join(job.placement.hosts)}")
        for fault in work.faults.step(elapsed):
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


def process_groups(testbed: Testbed, work: Work) -> dict[str, list[int]]:
    """The run's own process groups by name, for cpu.csv (each was started in a group
    of its own: the ledger kills them the same way)."""
    groups = {}
    if testbed.controller.popen is not None:
        groups["controller"] = [testbed.controller.popen.pid]
    if work.forkserver is not None and work.forkserver.proc is not None:
        groups["forkserver"] = [work.forkserver.proc.pid]
    for job in work.jobs.jobs:
        groups[f"job:{job.spec.name}"] = [p.popen.pid for p in job.processes if p.popen]
    for entry in work.traffic.entries:
        if entry.procs:
            groups[f"traffic:{entry.index}"] = [popen.pid for popen, _, _ in entry.procs]
    return groups
