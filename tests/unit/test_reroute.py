"""Rerouting around a link that went down, against the fake flow table: after the
controller's answer to the port-status, every host pair is delivered on every ECMP
alternative without crossing the dead link; only entries that used it change; and
when the link comes back the tables are exactly what they were."""

from __future__ import annotations

import itertools

import pytest

from controllers.accounting import Accounting
from controllers.ofmsg import discard_lost
from controllers.priority import make_priority
from controllers.routing import make_routing
from controllers.topology import Fabric
from testbed.spec.schema import DumbbellSpec, FatTreeSpec, LeafSpineSpec
from tests.fakeflow import FakeFabric
from topologies import build_topology


def programmed(spec, routing):
    data = build_topology(spec).to_json()
    fabric = Fabric.from_json(data)
    policy = make_routing(fabric, routing)
    fake = FakeFabric(data)
    none = {"policy": "none", "classes": 4, "dscp": [56, 48, 40, 32], "jobs": []}
    fake.program([make_priority(fabric, none), Accounting(fabric, none), policy])
    for switch in fake.switches.values():
        switch.apply(discard_lost())
    return fabric, policy, fake


def tables(fake) -> dict:
    return {
        name: sorted(
            (t, e.priority, sorted(e.match.items()), [str(a) for a in e.actions])
            for t, entries in sw.tables.items()
            for e in entries
        )
        for name, sw in fake.switches.items()
    }


def endpoints(fake, hosts) -> dict:
    return {
        (a, b): {end for end, _ in fake.deliveries(a, b)}
        for a, b in itertools.permutations(hosts, 2)
    }


def apply(fake, changes) -> int:
    for switch, msgs in changes.items():
        for msg in msgs:
            fake.switches[switch].apply(msg)
    return sum(len(m) for m in changes.values())


def switch_links(fabric):
    return sorted(
        {tuple(sorted((a, b))) for a in fabric.switches for b in fabric.switch_neighbors(a)}
    )


CASES = [
    (FatTreeSpec(k=4), "ecmp"),
    (FatTreeSpec(k=4), "two-level"),
    (LeafSpineSpec(kind="leaf-spine", spines=3, leaves=3, hosts_per_leaf=2), "ecmp"),
    (LeafSpineSpec(kind="leaf-spine", spines=3, leaves=3, hosts_per_leaf=2), "two-level"),
]


@pytest.mark.parametrize("spec,routing", CASES)
def test_every_single_link_failure_is_routed_around_and_undone(spec, routing):
    fabric, policy, fake = programmed(spec, routing)
    hosts = [h.name for h in fabric.hosts]
    before = tables(fake)
    total = sum(len(v) for v in before.values())
    for a, b in switch_links(fabric):
        fake.pull(a, b)
        changed = apply(fake, policy.link_changed(a, b, up=False))
        assert policy.link_changed(b, a, up=False) == {}  # the other end's report: no-op
        for pair, ends in endpoints(fake, hosts).items():
            assert ends == {pair[1]}, f"{a}-{b} down: {pair} ends at {ends}"
        assert 0 < changed < total / 2  # only what used the link
        fake.pull(a, b, up=True)
        apply(fake, policy.link_changed(a, b, up=True))
        assert tables(fake) == before, f"{a}-{b} back up: tables differ"


def test_a_cut_that_leaves_no_path_drops_instead_of_looping():
    fabric, policy, fake = programmed(DumbbellSpec(kind="dumbbell", hosts_per_side=2), "ecmp")
    ((a, b),) = switch_links(fabric)
    fake.pull(a, b)
    apply(fake, policy.link_changed(a, b, up=False))
    ends = endpoints(fake, [h.name for h in fabric.hosts])
    assert ends[("h1", "h3")] == {"drop"} and ends[("h1", "h2")] == {"h2"}
