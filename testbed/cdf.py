"""Empirical flow-size distributions: a CDF file of ``size_bytes cdf`` lines.

Sizes between two points are uniform (the CDF is linear between them), as in the
traffic generator the published files come from. `websearch` and `datamining` are
shipped in ``cdfs/``; any other name is a path to a file of the same format.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

SHIPPED = Path(__file__).with_name("cdfs")
NAMED = ("websearch", "datamining")


class CdfError(ValueError):
    """A CDF file that cannot be read or is not a distribution (message says why)."""


@dataclass(frozen=True)
class FlowSizes:
    """A piecewise-linear CDF: P(size <= sizes[i]) = cdf[i]."""

    sizes: tuple[float, ...]
    cdf: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean size in bytes (each segment contributes its midpoint)."""
        return sum(
            (self.cdf[i] - self.cdf[i - 1]) * (self.sizes[i] + self.sizes[i - 1]) / 2
            for i in range(1, len(self.sizes))
        )

    def sample(self, rng: random.Random) -> int:
        """One flow size in bytes (at least 1)."""
        u = rng.random() * self.cdf[-1]
        i = max(1, bisect_left(self.cdf, u))
        lo, hi = self.cdf[i - 1], self.cdf[i]
        frac = (u - lo) / (hi - lo) if hi > lo else 0.0
        return max(1, round(self.sizes[i - 1] + frac * (self.sizes[i] - self.sizes[i - 1])))


def cdf_path(distribution: str, base: Path) -> Path:
    """The file a spec's `distribution` names: a shipped one, or a path from `base`."""
    if distribution in NAMED:
        return SHIPPED / f"{distribution}.cdf"
    return base / distribution


def load_cdf(path: Path) -> FlowSizes:
    """Parse and check a CDF file; raise `CdfError` naming the first bad line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CdfError(f"cannot read {path} ({exc.strerror})") from None
    points = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            size, p = float(fields[0]), float(fields[-1])
        except ValueError:
            raise CdfError(f"line {number}: expected 'size_bytes cdf', got {line!r}") from None
        if points and (size < points[-1][0] or p < points[-1][1]):
            raise CdfError(f"line {number}: not monotone (size and cdf must not decrease)")
        if size < 0 or not 0 <= p <= 1:
            raise CdfError(f"line {number}: expected size >= 0 and 0 <= cdf <= 1")
        points.append((size, p))
    if len(points) < 2 or points[-1][1] != 1:
        raise CdfError("expected at least two points, the last with cdf 1")
    return FlowSizes(tuple(s for s, _ in points), tuple(p for _, p in points))
