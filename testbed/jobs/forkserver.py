"""The harness's side of the run's forkserver (`testbed.training.forkserver`).

`ForkServer.start` launches it before the network is built, so that importing torch
and loading the datasets overlap with building the fabric. `spawn` then forks one
training process into a Mininet host and returns a `ForkedProcess`, which the job
runner polls, waits for and kills exactly as it would a `subprocess.Popen`.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import sys
import time
from pathlib import Path
from subprocess import PIPE, Popen, TimeoutExpired

from testbed.errors import TestbedError
from testbed.ledger import Ledger, identity, kill_group

READY_TIMEOUT_S = 300  # importing torch takes ~2 s here, ~30 s in the TCG guest


class ForkServer:
    """One forkserver process per run; its children are the run's training processes."""

    def __init__(self, datasets: list[tuple[str, int]], log_path: Path, env: dict[str, str]):
        self.datasets = sorted(set(datasets))
        self.log_path = log_path
        self.env = env
        self.proc: Popen | None = None
        self.ident: list[int] = []
        self.ready = False
        self.ready_at = 0.0  # wall-clock time the preloading ended
        self.exited: int | None = None  # the forkserver's own exit code, once it is gone
        self.exits: dict[int, tuple[int, float]] = {}  # child pid -> (exit code, time)
        self._spawned: dict[int, dict] = {}  # request tag -> reply
        self._buffer = b""
        self._tag = 0

    def start(self, ledger: Ledger) -> None:
        """Launch the forkserver (it preloads in the background) and record it."""
        with open(self.log_path, "w") as log:
            self.proc = Popen(
                [sys.executable, "-m", "testbed.training.forkserver", json.dumps(self.datasets)],
                stdin=PIPE,
                stdout=PIPE,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
        ledger.add_process(self.proc.pid)
        self.ident = identity(self.proc.pid)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until the forkserver has preloaded; raise TestbedError if it failed."""
        self._await(lambda: self.ready, timeout_s, "preload torch and the datasets")

    def spawn(self, config: Path, log: Path, netns_pid: int, env: dict[str, str]) -> ForkedProcess:
        """Fork the training process for role file `config` into the namespaces of
        process `netns_pid` (a Mininet host's shell), writing to `log`."""
        self.wait_ready()
        self._tag += 1
        tag = self._tag
        self._send(
            {"spawn": tag, "config": str(config), "log": str(log), "netns": netns_pid, "env": env}
        )
        self._await(lambda: tag in self._spawned, 30, f"fork {config.name}")
        reply = self._spawned.pop(tag)
        if "error" in reply:
            raise TestbedError(f"forkserver could not fork {config.name}: {reply['error']}")
        return ForkedProcess(self, reply["pid"])

    def exit_of(self, pid: int) -> tuple[int, float] | None:
        """Child `pid`'s exit code and time, if known. Takes in what the forkserver has
        reported so far, without blocking. A child still unreported when the forkserver
        is gone was killed with it (PR_SET_PDEATHSIG), and counts as SIGKILLed."""
        if self.exited is None:
            while self._read(0):
                pass
        if pid not in self.exits and self.exited is not None:
            return -signal.SIGKILL, time.time()
        return self.exits.get(pid)

    def wait_exit(self, pid: int, timeout_s: float) -> tuple[int, float] | None:
        """Block until child `pid` has exited (its code and time) or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while (ended := self.exit_of(pid)) is None and time.monotonic() < deadline:
            self._read(min(0.2, deadline - time.monotonic()))
        return ended

    def stop(self) -> None:
        """Close the request pipe (the forkserver kills what is left and exits); kill
        its group if it does not. Safe to call twice."""
        proc = self.proc
        if proc is None or proc.stdin.closed:
            return
        proc.stdin.close()
        deadline = time.monotonic() + 10
        while self.exited is None and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())  # the last exits, then EOF
        if self.exited is None:
            kill_group(*self.ident)
            self.exited = proc.wait()
        proc.stdout.close()

    # ------------------------------------------------------------------ protocol

    def _await(self, done, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.exited is not None:
                raise TestbedError(
                    f"forkserver exited ({self.exited}) before it could {what}: "
                    f"{log_tail(self.log_path)} (logs/{self.log_path.name})"
                )
            if time.monotonic() > deadline:
                raise TestbedError(f"forkserver did not {what} within {timeout_s:.0f} s")
            self._read(deadline - time.monotonic())

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._read(1)  # take in the EOF, so that _await names the cause

    def _read(self, timeout_s: float) -> bool:
        """Handle the replies that arrive within `timeout_s`; False if none did."""
        if self.exited is not None:
            return False
        readable, _, _ = select.select([self.proc.stdout], [], [], max(timeout_s, 0))
        if not readable:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:  # EOF: the forkserver is gone
            self.exited = self.proc.wait()
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._handle(json.loads(line))
        return True

    def _handle(self, message: dict) -> None:
        if "ready" in message:
            self.ready, self.ready_at = True, message["time"]
        elif "spawned" in message:
            self._spawned[message["spawned"]] = message
        elif "exited" in message:
            self.exits[message["exited"]] = (message["code"], message["time"])


class ForkedProcess:
    """A forkserver child, with the part of `subprocess.Popen`'s interface the job
    runner uses: `pid`, `returncode`, `poll()` and `wait()`."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None
        self.exited_at: float | None = None  # wall-clock time the forkserver reaped it

    def poll(self) -> int | None:
        """The exit code if the process has ended, else None (never blocks)."""
        if self.returncode is None:
            ended = self.server.exit_of(self.pid)
            if ended is not None:
                self.returncode, self.exited_at = ended
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the process has ended; TimeoutExpired after `timeout` seconds."""
        if self.returncode is None:
            ended = self.server.wait_exit(self.pid, math.inf if timeout is None else timeout)
            if ended is None:
                raise TimeoutExpired(f"pid {self.pid}", timeout)
            self.returncode, self.exited_at = ended
        return self.returncode


def log_tail(path: Path, lines: int = 1) -> str:
    """The last `lines` lines of a log, joined with " | " (for one-line error messages)."""
    try:
        text = path.read_text().strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) if text else "(empty log)"
