"""The binomial interval of the loss checks equals scipy.stats' own."""

import itertools

from scipy.stats import binom

from testbed.stats import binomial_interval


def test_binomial_interval_is_scipy_stats_binom_interval():
    """Every combination of sizes (1 to 123,457 packets), loss probabilities (0 to 1,
    the edges included) and confidence levels (0.5 to 1 - 1e-5): 320 cases."""
    grid = itertools.product(
        [1, 2, 5, 10, 100, 1000, 20_000, 123_457],
        [0.0, 1e-4, 0.01, 0.05, 0.1, 0.5, 0.9, 1.0],
        [0.5, 0.9, 0.99, 0.999, 1 - 1e-5],
    )
    wrong = [
        (n, p, c, binomial_interval(c, n, p), binom.interval(c, n, p))
        for n, p, c in grid
        if binomial_interval(c, n, p) != tuple(float(x) for x in binom.interval(c, n, p))
    ]
    assert not wrong, wrong[:5]
