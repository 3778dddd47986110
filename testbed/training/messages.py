"""What the sync schemes report per message, and the helpers they share for entries
that are missing (lost by the transport) or dropped on purpose (`drop_fraction`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.transports import MessageStats


@dataclass(frozen=True)
class Message:
    """One message as `messages.csv` records it, at its receiver."""

    src: str
    dst: str
    kind: str  # push | pull | reduce | gather | allreduce
    stats: MessageStats


def drop_entries(
    grad: np.ndarray, fraction: float, rng: np.random.Generator, marker: float
) -> np.ndarray:
    """A copy of `grad` with a random `fraction` of entries replaced by `marker`
    (APNet §2.2: how much gradient loss does a model tolerate?)."""
    out = grad.copy()
    out[rng.random(len(out)) < fraction] = marker
    return out


def valid_mask(buf: np.ndarray, stats: MessageStats) -> np.ndarray | None:
    """Entries that arrived and were not dropped by the sender (None: all of them)."""
    dropped = np.isnan(buf)
    if stats.mask is None and not dropped.any():
        return None
    mask = ~dropped if stats.mask is None else stats.mask & ~dropped
    return mask
