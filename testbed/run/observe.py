"""Observe: start jobs and traffic at their offsets, fire faults when due, and show
progress until every job has ended; the run's status comes from its jobs."""

from __future__ import annotations

import time
from pathlib import Path

from testbed.progress import RunProgress
from testbed.run.start import Work

# How often the harness checks its jobs: a job's end is seen POLL_S/2 late on average,
# which every run pays; a poll reads only exit codes and the new bytes of one file.
POLL_S = 0.1


def observe(work: Work, progress: RunProgress) -> tuple[str, str]:
    """Follow the run to its end; return its (status, error) from the jobs'."""
    follow(work, progress)
    failed = [j for j in work.jobs.jobs if j.status != "ok"]
    error = "; ".join(f"{j.spec.name}: {j.error}" for j in failed)
    return ("failed" if failed else "ok"), error


def follow(work: Work, progress: RunProgress) -> None:
    """Start jobs and traffic and fire faults when due and show progress, until every
    job has ended and every timed traffic entry has run its duration_s."""
    jobs, traffic = work.jobs, work.traffic
    for job in jobs.jobs:
        records = Path(job.processes[-1].config.records).with_name("worker0.jsonl")
        total = None if job.spec.is_command else job.spec.iterations  # a script's: unknown
        progress.add_job(job.spec.name, total, records)
    start = time.monotonic()
    while True:
        _step(work, progress, time.monotonic() - start)
        if jobs.all_done and not traffic.timed_pending(time.monotonic() - start):
            return
        time.sleep(POLL_S)


def _step(work: Work, progress: RunProgress, elapsed: float) -> None:
    """One poll: what started, fired or ended since the last one."""
    work.traffic.check()
    for entry in work.traffic.start_due(elapsed):
        progress.phase(
            f"traffic {entry.index} ({entry.spec.kind}) started on {len(entry.hosts)} hosts"
        )
    for job in work.jobs.start_due(elapsed):
        progress.phase(f"job {job.spec.name} started on {' '.join(job.placement.hosts)}")
    for fault in work.faults.step(elapsed):
        detail = f": {fault.detail}" if fault.detail else ""
        progress.phase(f"fault {fault.index} at {elapsed:.1f} s: {fault.what}{detail}")
    for job in work.jobs.poll():
        colour = "green" if job.status == "ok" else "red"
        detail = f": {job.error}" if job.error else ""
        progress.phase(f"job {job.spec.name} [{colour}]{job.status}[/{colour}]{detail}")
    for job in work.jobs.jobs:
        progress.update_job(job.spec.name, job.status)
