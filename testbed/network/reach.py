"""Host reachability through the programmed fabric, checked before jobs start.

Up to FULL_CHECK_MAX_HOSTS hosts (a k=8 fat-tree: 16,256 pairs), every ordered pair
is checked. Above that the number of pairs grows as N^2 (a k=16 fat-tree: 1,047,552)
and the check would take longer than the run, so a sample is checked instead: each
host pings SAMPLE_TARGETS others at fixed offsets in h1..hN order (its neighbour, the
host half the fabric away, and seeded random offsets), so every host is a source and
a destination exactly SAMPLE_TARGETS times.

What the sample proves is SAMPLE_PROVES (also written to metadata.json).
"""

from __future__ import annotations

import random
from subprocess import PIPE

from testbed.network.protocol import Network

# fping runs from this many hosts at a time: all 128 hosts of a k=8 fat-tree probing
# at once overload a userspace datapath on two cores and read as false losses.
CONCURRENT_SOURCES = 16
FULL_CHECK_MAX_HOSTS = 128
SAMPLE_TARGETS = 8
SAMPLE_PROVES = (
    "every host's own link works both ways; every host is reached from its neighbour in "
    "h1..hN order (mostly its own rack) and from hosts in other pods; every destination's "
    "routes work from 8 sources. Not proven: that every switch holds a working entry for "
    "every destination (the controller's barrier-confirmed programming stands for that)"
)


def probe_plan(names: list[str], seed: int) -> dict[str, list[str]]:
    """source host -> the hosts it pings: all others, or the sample above."""
    n = len(names)
    if n <= FULL_CHECK_MAX_HOSTS:
        return {a: [b for b in names if b != a] for a in names}
    rng = random.Random(seed)
    offsets = [1, n // 2, *rng.sample(range(2, n - 1), SAMPLE_TARGETS + 2)]
    offsets = list(dict.fromkeys(offsets))[:SAMPLE_TARGETS]  # distinct, n // 2 may repeat
    return {a: [names[(i + o) % n] for o in offsets] for i, a in enumerate(names)}


def describe(plan: dict[str, list[str]]) -> dict:
    """metadata.json's `reachability`: what was checked, out of how many pairs."""
    n = len(plan)
    pairs = sum(map(len, plan.values()))
    full = pairs == n * (n - 1)
    return {
        "mode": "all pairs" if full else "sample",
        "pairs": pairs,
        "all_pairs": n * (n - 1),
        **({} if full else {"targets_per_host": pairs // n, "proves": SAMPLE_PROVES}),
    }


def unreachable_pairs(net: Network, plan: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(src, dst) pairs of `plan` that did not answer a ping, even after retries.

    Each source host pings its targets with one fping process (N processes, not N^2),
    a batch of sources at a time; fping retries silent targets itself.
    """
    infos = net.topo.host_info
    by_ip = {info.ip: name for name, info in infos.items()}
    names = list(plan)
    failures: list[tuple[str, str]] = []
    for start in range(0, len(names), CONCURRENT_SOURCES):
        procs = {}
        for name in names[start : start + CONCURRENT_SOURCES]:
            targets = [infos[other].ip for other in plan[name]]
            # -u: print unreachable targets; -r 3 retries, first timeout 500 ms, backing off.
            procs[name] = net.host(name).popen(
                ["fping", "-u", "-r", "3", "-t", "500", "-i", "5", *targets],
                stdout=PIPE,
                stderr=PIPE,
                text=True,
            )
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=120)
            failures += [(name, by_ip[ip]) for ip in out.split() if ip in by_ip]
    return failures
