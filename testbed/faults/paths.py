"""Which host pairs a broken link can disrupt, from the topology alone.

A pair is exposed to a link when the link lies on one of the pair's shortest paths
(over the links still up): ECMP may hash the pair's packets onto it, and two-level
routing's fixed path is one of these. Pairs the link cuts off completely (a host's
only link) have no path left, and no probe can show a recovery for them.
"""

from __future__ import annotations

import itertools
import random

from controllers.topology import Fabric

Link = frozenset  # of its two node names


def exposed_pairs(fabric: Fabric, links: set[Link], down: set[Link]) -> list[tuple[str, str]]:
    """(src, dst) host pairs with a shortest path (avoiding `down`) over any of `links`."""
    frozen = frozenset(down)
    dist = {s: fabric.hops_to(s, frozen) for s in fabric.switches}
    where = {h.name: h.switch for h in fabric.hosts}
    pairs = []
    for src, dst in itertools.permutations(where, 2):
        a, b = where[src], where[dst]
        if any(_on_shortest(dist, a, b, link, src, dst) for link in links):
            pairs.append((src, dst))
    return pairs


def _on_shortest(dist, a: str, b: str, link: Link, src: str, dst: str) -> bool:
    """Whether `link` lies on a shortest path from switch a to switch b (a host link
    only on its own host's paths)."""
    u, v = sorted(link)
    if u in (src, dst) or v in (src, dst):
        return True
    if u not in dist or v not in dist or a not in dist[b]:
        return False
    total = dist[b][a]
    return any(dist[x].get(a, -99) + 1 + dist[b].get(y, -99) == total for x, y in ((u, v), (v, u)))


def cut_off(fabric: Fabric, down: set[Link]) -> list[tuple[str, str]]:
    """(src, dst) host pairs with no path at all while `down` is down."""
    frozen = frozenset(link for link in down if all(n in fabric.switches for n in link))
    hosts_down = {n for link in down for n in link if n not in fabric.switches}
    reach = {s: fabric.hops_to(s, frozen) for s in {h.switch for h in fabric.hosts}}
    return [
        (h1.name, h2.name)
        for h1, h2 in itertools.permutations(fabric.hosts, 2)
        if h1.name in hosts_down or h2.name in hosts_down or h1.switch not in reach[h2.switch]
    ]


def sample(
    pairs: list[tuple[str, str]], limit: int, seed: int, busy: set[str] = frozenset()
) -> list[tuple[str, str]]:
    """At most `limit` of `pairs`, the same ones for the same seed: first pairs of hosts
    outside `busy` (the jobs' hosts, whose own links the jobs keep full), then pairs
    with one busy end, then the rest."""
    rng = random.Random(seed)
    chosen: list[tuple[str, str]] = []
    for ends in (0, 1, 2):
        tier = sorted(p for p in pairs if sum(h in busy for h in p) == ends)
        rng.shuffle(tier)
        chosen += tier[: limit - len(chosen)]
    return sorted(chosen)
