"""A background thread that calls `sample` every `interval_s` until stopped, shared by
the link monitor (links.csv) and the CPU sampler (cpu.csv)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("testbed.sampling")


class Periodic:
    """``start()`` begins sampling; ``stop()`` ends it and takes one last sample (so
    cumulative totals are complete). A failed sample is logged, never fatal."""

    def __init__(self, name: str, interval_s: float, sample: Callable[[], object]):
        self.name, self.interval_s, self.sample = name, interval_s, sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Idempotent: only the first call joins the thread and takes the last sample."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a missed sample must not end sampling for the run
                log.exception("%s: sample failed", self.name)
