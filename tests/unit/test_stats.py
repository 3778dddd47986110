"""The binomial interval of the loss checks equals scipy.stats' own."""

import itertools

import pytest
from scipy.stats import binom

from testbed.stats import binomial_interval

GRID = itertools.product(
    [1, 2, 5, 10, 100, 1000, 20_000, 123_457],
    [0.0, 1e-4, 0.01, 0.05, 0.1, 0.5, 0.9, 1.0],
    [0.5, 0.9, 0.99, 0.999, 1 - 1e-5],
)


@pytest.mark.parametrize("n, p, confidence", list(GRID))
def test_binomial_interval_is_scipy_stats_binom_interval(n, p, confidence):
    expected = tuple(float(x) for x in binom.interval(confidence, n, p))
    assert binomial_interval(confidence, n, p) == expected
