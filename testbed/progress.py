"""What a run tells its user: live progress on the terminal (stderr) while it is under
way, and everything else in the harness log (`log_to`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class IterationCounter:
    """Counts a worker's iteration records as they are appended (reads only new bytes)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.count = 0

    def update(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return self.count
        complete = chunk[: chunk.rfind(b"\n") + 1]  # leave a half-written line for later
        self.offset += len(complete)
        self.count += complete.count(b'"type": "iteration"')
        return self.count


class RunProgress:
    """Phase messages plus one bar per job; a no-op display when not a terminal."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.t0 = time.monotonic()
        self.tasks: dict[str, tuple[int, IterationCounter]] = {}

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def phase(self, message: str) -> None:
        """Print a timestamped phase line above the bars."""
        self.progress.console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/dim] {message}")

    def add_job(self, name: str, iterations: int | None, records: Path) -> None:
        task = self.progress.add_task(name, total=iterations, status="pending")
        self.tasks[name] = (task, IterationCounter(records))

    def update_job(self, name: str, status: str) -> None:
        task, counter = self.tasks[name]
        self.progress.update(task, completed=counter.update(), status=status)


def log_to(path: Path) -> None:
    """Send the harness's log (logger "testbed") to `path`, replacing an earlier file."""
    # A full disk must not print a traceback per log line; the run reports it once.
    logging.raiseExceptions = False
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("testbed")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
