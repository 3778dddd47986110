"""Command jobs: the user's own program, once per host, as ``torchrun`` would start a
one-process node.

Each rank gets the environment torchrun gives (MASTER_ADDR/PORT, RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK) plus GLOO_SOCKET_IFNAME, which gloo needs
inside Mininet, so an unmodified ``init_process_group("gloo")`` script works. Its
stdout is read line by line: a JSON object with an ``iteration`` key becomes a record
(a row of iterations.csv), anything else goes to the rank's log with its stderr. No
shell is involved at any point: the argv list reaches ``mnexec`` as it is.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE, Popen

from testbed.layout import RunPaths
from testbed.spec.job_rules import command_workdir, expand_command
from testbed.spec.placement import Placement
from testbed.spec.schema import JobSpec

# torchrun's default; free because the first host runs this job's rank 0 alone.
MASTER_PORT = 29500
READER_JOIN_S = 5.0  # after the process is gone, its pipes end at once
# Keys the harness sets on a metrics record; a script's own are kept as script_<key>.
RESERVED = ("type", "job", "rank", "time", "time_s")


@dataclass(frozen=True)
class RankConfig:
    """What the job runner needs to know of one rank (the counterpart of RoleConfig)."""

    job: str
    rank: int
    host: str
    records: str  # raw/<job>/worker<rank>.jsonl: the progress bar follows rank 0's
    role: str = "rank"


@dataclass
class CommandProcess:
    """One rank of a command job: its argv, environment and the threads reading it."""

    config: RankConfig
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    log_path: Path
    popen: Popen | None = None
    ident: list[int] = field(default_factory=list)
    ended_at: float | None = None
    last_stderr: str = ""
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"rank{self.config.rank}@{self.config.host}"

    @property
    def blame(self) -> str:
        return self.label

    def tail(self) -> str:
        """The last line the rank wrote to stderr (for the job's one-line error)."""
        return self.last_stderr or "(no stderr output)"

    def join_readers(self) -> None:
        """Wait until both pipes are drained, so every metric line is on disk."""
        for reader in self.readers:
            reader.join(READER_JOIN_S)


def plan_command(
    job: JobSpec,
    placement: Placement,
    ips: dict[str, str],
    run_dir: Path,
    source: str,
    base_env: dict[str, str],
) -> list[CommandProcess]:
    """One `CommandProcess` per host of `placement`, in rank order."""
    raw = RunPaths(run_dir).job(job.name)
    raw.mkdir(parents=True, exist_ok=True)
    argv = expand_command(job.command)
    workdir = command_workdir(job, source)
    planned = []
    for rank, host in enumerate(placement.hosts):
        env = {**base_env, **torchrun_env(job, rank, placement, ips, run_dir), **job.env}
        planned.append(
            CommandProcess(
                RankConfig(
                    job.name, rank, host, str(RunPaths(run_dir).records(job.name, f"worker{rank}"))
                ),
                argv,
                env,
                workdir,
                RunPaths(run_dir).log(f"{job.name}-rank{rank}-{host}"),
            )
        )
    return planned


def torchrun_env(
    job: JobSpec, rank: int, placement: Placement, ips: dict[str, str], run_dir: Path
) -> dict[str, str]:
    """The variables torchrun sets for a one-process node, plus the testbed's own."""
    host = placement.hosts[rank]
    return {
        "MASTER_ADDR": ips[placement.hosts[0]],
        "MASTER_PORT": str(MASTER_PORT),
        "RANK": str(rank),
        "WORLD_SIZE": str(len(placement.hosts)),
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "GROUP_RANK": str(rank),
        "GLOO_SOCKET_IFNAME": f"{host}-eth0",
        "TESTBED_JOB": job.name,
        "TESTBED_RUN_DIR": str(run_dir),
    }


def start(proc: CommandProcess, host) -> Popen:
    """Start `proc` in Mininet host `host`'s namespace and its reader threads."""
    proc.popen = host.popen(
        proc.argv, stdin=None, stdout=PIPE, stderr=PIPE, cwd=str(proc.workdir), env=proc.env
    )
    log = SharedLog(proc.log_path, writers=2)
    log.write(f"# {shlex.join(proc.argv)}  (in {proc.workdir})")
    records = open(proc.config.records, "a", buffering=1)
    proc.readers = [
        threading.Thread(target=_read_stdout, args=(proc, log, records), daemon=True),
        threading.Thread(target=_read_stderr, args=(proc, log), daemon=True),
    ]
    for reader in proc.readers:
        reader.start()
    return proc.popen


def metrics_record(line: str, job: str, rank: int, seen: float) -> dict | None:
    """The iterations.csv record a stdout line stands for, or None if it is not one:
    a JSON object with an integer ``iteration``. Nested values are kept as JSON text,
    so every column stays a scalar."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
        return None
    fields = {
        (f"script_{k}" if k in RESERVED else k): (
            v if v is None or isinstance(v, (int, float, str, bool)) else json.dumps(v)
        )
        for k, v in data.items()
    }
    return {"type": "iteration", "time": seen, "job": job, "rank": rank, **fields}


class SharedLog:
    """A rank's log, written by both of its pipe readers; the last one to finish
    closes it."""

    def __init__(self, path: Path, writers: int):
        self.fh = open(path, "a", buffering=1)
        self.writers = writers
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.fh.write(line + "\n")

    def release(self) -> None:
        with self.lock:
            self.writers -= 1
            if self.writers == 0:
                self.fh.close()


def _lines(pipe):
    for raw in pipe:
        yield raw.decode("utf-8", "replace").rstrip("\n")


def _read_stdout(proc: CommandProcess, log: SharedLog, records) -> None:
    try:
        for line in _lines(proc.popen.stdout):
            record = metrics_record(line, proc.config.job, proc.config.rank, time.time())
            if record is not None:
                records.write(json.dumps(record) + "\n")
            else:
                log.write(line)
    finally:
        records.close()
        log.release()


def _read_stderr(proc: CommandProcess, log: SharedLog) -> None:
    try:
        for line in _lines(proc.popen.stderr):
            if line.strip():
                proc.last_stderr = line.strip()
            log.write(line)
    finally:
        log.release()


def describe(job: JobSpec) -> dict[str, str]:
    """jobs.csv fields of a command job: its command line, no model or transport."""
    return {"command": shlex.join(job.command), "model": "command"}
