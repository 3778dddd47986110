"""What a job's run is made of (its role processes) and how its end is judged: exit
codes, which process a failure names, and the job's summary for jobs.csv."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from testbed.jobs import command
from testbed.jobs.command import CommandProcess
from testbed.jobs.forkserver import ForkedProcess, log_tail
from testbed.jobs.trees import Tree
from testbed.spec.placement import Placement
from testbed.spec.schema import JobSpec
from testbed.training.role import RoleConfig


@dataclass
class RoleProcess:
    """A launched (or to-be-launched) process of a job."""

    config: RoleConfig
    config_path: Path
    log_path: Path
    popen: Popen | ForkedProcess | None = None
    ident: list[int] = field(default_factory=list)
    ended_at: float | None = None  # when it exited (the forkserver's clock) or was seen to

    @property
    def label(self) -> str:
        return f"{self.config.role}{self.config.rank}@{self.config.host}"

    @property
    def blame(self) -> str:
        """How a job's error names this process: its label, and its tree role if any."""
        shards = [e["shard"] for e in self.config.tree if e["children"]]
        if self.config.role == "worker" and shards:
            return f"aggregator {self.label} (tree of server{', server'.join(map(str, shards))})"
        return self.label

    def tail(self) -> str:
        """The last line of the process's log (for the job's one-line error)."""
        return log_tail(self.log_path)

    def join_readers(self) -> None:
        """Nothing to wait for: a training process writes its records itself."""


@dataclass
class JobRun:
    """State of one job during the run."""

    spec: JobSpec
    placement: Placement
    processes: list[RoleProcess | CommandProcess]
    trees: list[Tree] = field(default_factory=list)
    status: str = "pending"  # pending | running | ok | failed | timeout | interrupted
    launched_at: float | None = None
    error: str = ""
    lost: list[str] = field(default_factory=list)  # workers on_failure: continue went on without
    killed: dict[str, str] = field(default_factory=dict)  # label -> which fault killed it

    @property
    def done(self) -> bool:
        return self.status in ("ok", "failed", "timeout", "interrupted")

    def overdue(self, now: float) -> bool:
        """Whether the job has run longer than its `timeout_s`."""
        limit = self.spec.timeout_s
        return bool(limit and self.launched_at and now - self.launched_at > limit)


def summary(job: JobRun) -> dict:
    """One job's facts for jobs.csv: its spec fields, status, launch time and each
    process's exit code (in role order; empty: not started or not seen to end).
    A command job's JCT is known here only: launch to its last rank's exit."""
    spec = job.spec
    codes = [p.popen.returncode if p.popen else None for p in job.processes]
    facts = {
        "job": spec.name,
        "workers": spec.workers,
        "servers": spec.servers,
        "status": job.status,
        "launched_at": job.launched_at,
        "start_s": spec.start_s,
        "hosts": " ".join(job.placement.hosts),
        "error": job.error,
        "exit_codes": " ".join("" if c is None else str(c) for c in codes),
        "timeout_s": spec.timeout_s,
        "on_failure": spec.on_failure,
        "lost_workers": " ".join(job.lost),
    }
    if spec.is_command:
        ends = [p.ended_at for p in job.processes]
        done = job.launched_at and all(e is not None for e in ends)
        jct = round(max(ends) - job.launched_at, 3) if done else None
        return {**facts, **command.describe(spec), "jct_s": jct}
    return {
        **facts,
        "transport": spec.transport.kind,
        "sync": spec.sync,
        "model": spec.model.name,
        "dataset": spec.dataset,
        "aggregation": spec.aggregation_name,
        "target_accuracy": spec.target_accuracy,
    }


def exit_codes(processes: list[RoleProcess]) -> list[int | None]:
    """Each launched process's exit code (None: running), recording when each was seen
    to end."""
    codes = [p.popen.poll() for p in processes if p.popen]
    seen = time.time()  # one time for every exit this poll sees: a tie, not an order
    for proc, code in zip(processes, codes):
        if code is not None and proc.ended_at is None:
            proc.ended_at = getattr(proc.popen, "exited_at", None) or seen
    return codes


def culprit(processes: list[RoleProcess], grace_s: float) -> RoleProcess:
    """The failed process a job's error names, once the failure has had `grace_s` to
    show a signal death behind it.

    A failure is often two exits: a worker killed by a signal, and its server exiting 1
    a moment later on the reset connection. The order they are reported in is not the
    order they died in: a forkserver that wakes late finds both as zombies and reaps
    the older (the server) first. So wait briefly for a signal death before naming
    anyone."""
    deadline = time.monotonic() + grace_s
    while True:
        codes = exit_codes(processes)
        if any(c is not None and c < 0 for c in codes) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    failed = [p for p, c in zip(processes, codes) if c not in (None, 0)]
    return min(failed, key=_blame_order)


def _blame_order(proc: RoleProcess) -> tuple[bool, float]:
    """Which failed process a job's error names: one killed by a signal (a cause: no
    peer's failure makes a process die by a signal here) before one that exited with an
    error (usually a peer's reset connection: a consequence); then the one that ended
    first."""
    return (proc.popen.returncode >= 0, proc.ended_at)
