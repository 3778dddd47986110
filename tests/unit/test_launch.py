"""Which process a failed job's error names (testbed.jobs.launch.culprit)."""

import time
from pathlib import Path

from testbed.jobs.launch import RoleProcess, culprit


class Exits:
    """A stand-in for a child process that ends with `code` at `at` (monotonic), and is
    reaped (`exited_at`, wall clock) at `reaped`: the order the forkserver reports in."""

    def __init__(self, code: int | None, at: float = 0.0, reaped: float = 0.0):
        self.code, self.at, self.exited_at = code, at, reaped
        self.returncode = None

    def poll(self):
        if self.code is not None and time.monotonic() >= self.at:
            self.returncode = self.code
        return self.returncode


def process(popen: Exits) -> RoleProcess:
    return RoleProcess(config=None, config_path=Path("x.json"), log_path=Path("x.log"), popen=popen)


def test_a_signal_death_reaped_after_its_consequence_is_still_named():
    # The CI failure: the server (older, so reaped first) exited 1 on the reset
    # connection; the SIGKILLed worker was reaped 1 ms later.
    now = time.monotonic()
    server = process(Exits(1, now, reaped=100.000))
    worker = process(Exits(-9, now, reaped=100.001))
    assert culprit([server, worker], grace_s=0) is worker


def test_a_signal_death_reported_within_the_grace_is_waited_for():
    now = time.monotonic()
    server = process(Exits(1, now, reaped=100.0))
    worker = process(Exits(-9, now + 0.3, reaped=100.3))
    assert culprit([server, worker], grace_s=1.0) is worker


def test_without_a_signal_death_the_first_to_end_is_named_after_the_grace():
    now = time.monotonic()
    first = process(Exits(2, now, reaped=100.0))
    later = process(Exits(1, now, reaped=100.5))
    running = process(Exits(None))
    start = time.monotonic()
    assert culprit([later, running, first], grace_s=0.2) is first
    assert time.monotonic() - start >= 0.2  # it did wait for a possible cause
