"""The binomial interval that loss checks use, from scipy.special alone.

`scipy.stats` takes 0.4 s to import here (0.8 s under load), paid by every run's
harness for two calls; scipy.special, which scipy.stats itself calls for this, takes
a fifth of that. The result equals ``scipy.stats.binom.interval`` (tests check it on a
grid)."""

from __future__ import annotations

import math

from scipy import special


def binomial_interval(confidence: float, n: int, p: float) -> tuple[float, float]:
    """The central `confidence` interval of Binomial(n, p): the (1-c)/2 and (1+c)/2
    quantiles, as ``scipy.stats.binom.interval(confidence, n, p)`` gives them."""
    return _ppf((1 - confidence) / 2, n, p), _ppf((1 + confidence) / 2, n, p)


def _ppf(q: float, n: int, p: float) -> float:
    """The smallest k with P(X <= k) >= q (scipy's binom._ppf, with its edge cases)."""
    if q <= 0:
        return -1.0
    if q >= 1 or p >= 1:
        return float(n)
    if p <= 0 or n <= 0:
        return 0.0
    k = math.ceil(special.bdtrik(q, n, p))
    below = max(k - 1, 0)
    return float(below if special.bdtr(below, n, p) >= q else min(k, n))
