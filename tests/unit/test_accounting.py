"""Per-job tier counters (controllers.accounting) on a fake fat-tree: a packet between
two hosts of a job is counted once on every link it crosses, by that link's tier, and
nothing else is counted."""

from __future__ import annotations

from collections import Counter

import pytest

from controllers.accounting import Accounting
from controllers.cookies import parse_account_cookie
from controllers.ofmsg import discard_lost
from controllers.priority import make_priority
from controllers.routing import make_routing
from controllers.topology import Fabric
from testbed.spec.schema import FatTreeSpec, LeafSpineSpec
from tests.fakeflow import FakeFabric
from topologies import build_topology

SIZE = 100  # bytes the fake switch counts per packet


def programmed(spec, jobs):
    data = build_topology(spec).to_json()
    fabric = Fabric.from_json(data)
    config = {"policy": "none", "classes": 4, "dscp": [56, 48, 40, 32], "jobs": jobs}
    fake = FakeFabric(data)
    fake.program(
        [
            make_priority(fabric, config),
            Accounting(fabric, config),
            make_routing(fabric, "two-level"),
        ]
    )
    for switch in fake.switches.values():
        switch.apply(discard_lost())
    return fake


def tier_bytes(fake) -> Counter:
    totals = Counter()
    for switch in fake.switches.values():
        for entries in switch.tables.values():
            for e in entries:
                parsed = parse_account_cookie(e.cookie)
                if parsed:
                    totals[parsed] += e.bytes
    return totals


@pytest.mark.parametrize(
    "src,dst,expected",
    [
        ("h1", "h2", {"host": 2}),  # same rack
        ("h1", "h3", {"host": 2, "edge": 2}),  # same pod
        ("h1", "h16", {"host": 2, "edge": 2, "core": 2}),  # across the core
    ],
)
def test_a_packet_is_counted_once_per_link_by_tier(src, dst, expected):
    fake = programmed(FatTreeSpec(k=4), [{"name": "a", "hosts": [src, dst]}])
    assert [end for end, _ in fake.deliveries(src, dst)] == [dst]
    got = tier_bytes(fake)
    assert got == Counter({(tier, 0): n * SIZE for tier, n in expected.items()})


def test_other_hosts_and_other_jobs_are_not_counted_as_the_job():
    fake = programmed(
        FatTreeSpec(k=4),
        [{"name": "a", "hosts": ["h1", "h16"]}, {"name": "b", "hosts": ["h5", "h9"]}],
    )
    fake.deliveries("h3", "h16")  # h3 is in no job
    fake.deliveries("h5", "h9")  # job b, across the core
    got = tier_bytes(fake)
    assert {job for _, job in got if got[(_, job)]} == {1}
    assert got[("core", 1)] == 2 * SIZE


def test_leaf_spine_counts_the_fabric_tier():
    spec = LeafSpineSpec(kind="leaf-spine", spines=2, leaves=2, hosts_per_leaf=2)
    fake = programmed(spec, [{"name": "a", "hosts": ["h1", "h4"]}])
    fake.deliveries("h1", "h4")
    assert tier_bytes(fake) == Counter({("host", 0): 2 * SIZE, ("fabric", 0): 2 * SIZE})
