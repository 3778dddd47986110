"""One run at a time on a machine.

Two runs would build switches and hosts of the same names (s1, h1, ...) in the one root
namespace, and the second would fail halfway through building, or worse, tear down
parts of the first. So `prepare` takes an exclusive ``flock`` on
``/run/mlnet-testbed/active.lock`` before it creates anything, and the lock file says
who holds it. A second run refuses at once, naming the active run and its PID. The
kernel drops the lock when its holder dies, however it dies, so a crashed run never
blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

from testbed.errors import TestbedError
from testbed.ledger import STATE_DIR

LOCK_FILE = "active.lock"


class RunLock:
    """The machine-wide run lock, held from `acquire` until `release`."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def acquire(self, name: str) -> None:
        """Take the lock or raise `TestbedError` naming the run that holds it."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(STATE_DIR / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise TestbedError(
                f"another run is active: {holder.get('name', '?')} in "
                f"{holder.get('run_dir', '?')} (pid {holder.get('pid', '?')}); one run at a "
                "time per machine: wait for it, or stop it with kill -INT"
            ) from None
        self.fd = fd
        self.describe(name=name, run_dir="(being created)")

    def describe(self, **facts: str) -> None:
        """Record who holds the lock (pid, name, run directory) in the lock file."""
        if self.fd is None:
            return
        current = _read(self.fd)
        current.update(facts, pid=os.getpid(), since_unix=current.get("since_unix", time.time()))
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(current) + "\n").encode(), 0)

    def release(self) -> None:
        """Let the next run in (idempotent)."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
