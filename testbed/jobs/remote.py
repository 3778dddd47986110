"""Training processes on the servers of a cluster, started and stopped from this one.

Every server has the project at the same path (as MininetCluster needs Mininet on
each), so a process there is the same ``python -m testbed.training ROLE.json``. Each
server's processes work in a scratch directory of the run, ``SCRATCH/<run id>``: the
role files are copied there before the job starts, the records are written there and
copied back into the run directory once every job has ended (`JobRunner.stop_all`),
then the scratch directory goes.
The process's output comes back over ssh into the run's own log file as it is written.

A process is started in a session of its own, ``setsid -w sh -c 'echo $$ > PIDFILE;
exec ...'``, so its pid (in the pid file) is its process group: stopping it is a
``kill`` of that group on its server (killing the local ssh client would leave it
running). `testbed clean` finds the pid files in the ledger.

On this machine (the first server) the same commands run without ssh, so that both
halves of a cluster run start their processes the same way.
"""

from __future__ import annotations

import io
import logging
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath
from subprocess import STDOUT, Popen

from testbed.errors import TestbedError

log = logging.getLogger("testbed.jobs")

SCRATCH = PurePosixPath("/tmp/mlnet-testbed")
COPY_TIMEOUT_S = 120
KILL_GRACE_S = 5.0


def on_server(prefix: list[str], argv: list[str]) -> list[str]:
    """`argv` as root on the server that `prefix` reaches (an ssh command without its
    remote words, or [] for this machine). ssh joins its remote words into one shell
    line, so they go as one quoted string."""
    if not prefix:
        return argv
    return [*prefix, shlex.join(["sudo", "-n", *argv])]


def scratch_dir(run_id: str) -> PurePosixPath:
    """Where a run's files live on a server other than this one."""
    return SCRATCH / run_id


def put_files(prefix: list[str], files: dict[str, bytes]) -> None:
    """Write `files` (absolute path -> content) on the server, creating directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    _run(prefix, ["tar", "-C", "/", "-xf", "-"], buffer.getvalue(), "copy role files to")


def get_files(prefix: list[str], files: dict[str, Path]) -> list[str]:
    """Copy server path -> local path for each of `files` that exists there; return the
    server paths that were missing (a process that died before writing)."""
    names = [p.lstrip("/") for p in files]
    out = _run(
        prefix,
        ["tar", "-C", "/", "--ignore-failed-read", "-cf", "-", *names],
        b"",
        "copy records from",
        ok=(0, 2),  # 2: some file was missing; the rest are in the archive
    )
    found = set()
    with tarfile.open(fileobj=io.BytesIO(out), mode="r") as tar:
        for member in tar.getmembers():
            local = files.get("/" + member.name)
            data = tar.extractfile(member) if member.isfile() else None
            if local is not None and data is not None:
                local.write_bytes(data.read())
                found.add("/" + member.name)
    return [p for p in files if p not in found]


def remove_dir(prefix: list[str], path: PurePosixPath) -> None:
    """Remove a run's scratch directory on the server (only ever under SCRATCH)."""
    if SCRATCH not in path.parents:
        raise ValueError(f"{path} is not a scratch directory")
    _run(prefix, ["rm", "-rf", "--", str(path)], b"", "remove scratch on", check=False)


def _run(prefix, argv, stdin: bytes, what: str, ok=(0,), check=True) -> bytes:
    where = prefix[-1] if prefix else "this machine"
    log.debug("$ %s (on %s)", shlex.join(argv), where)
    try:
        proc = subprocess.run(
            on_server(prefix, argv), input=stdin, capture_output=True, timeout=COPY_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise TestbedError(f"could not {what} {where}: no answer in {COPY_TIMEOUT_S} s") from None
    if check and proc.returncode not in ok:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise TestbedError(f"could not {what} {where}: {''.join(detail) or proc.returncode}")
    return proc.stdout


class RemoteProcess:
    """One process started with `start` on a server; polled like a `Popen` (the local
    end is ssh, or the process's own session here), stopped with `stop`."""

    def __init__(self, prefix: list[str], pidfile: str, marker: str, popen: Popen):
        self.prefix, self.pidfile, self.marker, self.popen = prefix, pidfile, marker, popen

    @property
    def pid(self) -> int:
        return self.popen.pid  # the local end's (ssh's): its session is the local group

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        """SIGTERM the process group on its server, SIGKILL it after KILL_GRACE_S."""
        for signal_name in ("TERM", "KILL"):
            if self.popen.poll() is not None:
                return
            subprocess.run(
                on_server(self.prefix, ["sh", "-c", kill_line(signal_name), "kill",
                                        self.pidfile, self.marker]),
                capture_output=True, timeout=COPY_TIMEOUT_S,
            )  # fmt: skip
            try:
                self.popen.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                continue


def kill_line(signal_name: str) -> str:
    """A shell line: signal the group in pid file $1 if its process's command line
    still holds $2 (so a pid reused since is left alone)."""
    return (
        'p=$(cat "$1" 2>/dev/null) && tr "\\0" " " < /proc/$p/cmdline | grep -qF -- "$2" '
        f"&& kill -{signal_name} -$p"  # dash's kill takes no --
    )


def start(
    prefix: list[str],
    ns_pid: int,
    argv: list[str],
    env: dict[str, str],
    pidfile: str,
    marker: str,
    log_path: Path,
) -> RemoteProcess:
    """Start `argv` in the network namespace of process `ns_pid` on the server, its pid
    in `pidfile`, its output into `log_path` here. `marker` is a word of `argv` that
    identifies it (its role file) for `stop` and `testbed clean`."""
    assert marker in argv
    words = ["env", *(f"{k}={v}" for k, v in sorted(env.items())), *argv]
    inner = ["mnexec", "-a", str(ns_pid), *words]
    # sh's $$ is the session leader setsid made; exec keeps that pid for the process.
    line = ["setsid", "-w", "sh", "-c", 'echo $$ > "$0" && exec "$@"', pidfile, *inner]
    log.debug("$ %s", shlex.join(on_server(prefix, line)))
    with open(log_path, "w") as out:
        popen = Popen(
            on_server(prefix, line),
            stdout=out,
            stderr=STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return RemoteProcess(prefix, pidfile, marker, popen)


class ClusterLauncher:
    """The training processes of a cluster run: where each works, how it starts and
    stops, and its records brought home. `net` is a `ClusterNetwork`."""

    def __init__(self, net, ledger, run_dir: Path):
        self.net, self.ledger, self.run_dir = net, ledger, run_dir
        self.scratch = scratch_dir(ledger.run_id)
        self.fetch: dict[str, dict[str, Path]] = {}  # server -> its path -> run dir path
        self.prefixes: dict[str, list[str]] = {}  # server -> how to reach it

    def records_path(self, host: str, local: Path) -> str:
        """Where the process on `host` writes the records that belong at `local`."""
        server, prefix = self._server(host)
        if not prefix:
            return str(local)
        there = str(self.scratch / local.relative_to(self.run_dir))
        self.fetch.setdefault(server, {})[there] = local
        return there

    def start(self, host: str, config: Path, log_path: Path, env: dict[str, str]):
        """Start the training process of role file `config` on `host`'s server."""
        server, prefix = self._server(host)
        there = str(self.scratch / config.relative_to(self.run_dir)) if prefix else str(config)
        pidfile = str(self.scratch / "pids" / (config.stem + "-" + config.parent.name + ".pid"))
        self.ledger.add_on_server(server, pidfiles=[[pidfile, there]], dirs=[str(self.scratch)])
        files = {pidfile: b""}  # makes its directory
        if prefix:
            files[there] = config.read_bytes()
        put_files(prefix, files)
        argv = [sys.executable, "-m", "testbed.training", there]
        return start(prefix, self.net.host(host).pid, argv, env, pidfile, there, log_path)

    def collect(self) -> list[str]:
        """Bring every server's records home and remove the scratch directories; return
        what was missing. Idempotent."""
        missing = []
        for server, files in self.fetch.items():
            missing += [f"{p} on {server}" for p in get_files(self.prefixes[server], files)]
        for prefix in self.prefixes.values():
            remove_dir(prefix, self.scratch)
        self.fetch = {}
        return missing

    def _server(self, host: str) -> tuple[str, list[str]]:
        server = self.net.host(host).server
        self.prefixes.setdefault(server, self.net.prefix_of(host))
        return server, self.prefixes[server]
