"""Signals during a run: SIGINT and SIGTERM end in the same teardown, and teardown
itself holds SIGINT off (it must finish) while remembering that one came."""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(Exception):
    """SIGTERM asked the run to stop."""


def raise_interrupted(signum, frame):
    """SIGTERM's handler during a run: raise `Interrupted` where the run is."""
    raise Interrupted(f"signal {signum}")


_interrupt_pending = threading.Event()


@contextlib.contextmanager
def no_sigint():
    """Hold SIGINT off while teardown runs (it must finish), remembering one that came:
    a study stops after this run instead of starting the next (`interrupt_pending`)."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: _interrupt_pending.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_pending() -> bool:
    """Whether a SIGINT arrived while teardown held it off (and clear the mark)."""
    pending = _interrupt_pending.is_set()
    _interrupt_pending.clear()
    return pending


def describe(exc: BaseException) -> str:
    """An exception as one line: an OSError by its reason and file."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"
