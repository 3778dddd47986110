"""Routing policies against a fake flow table: every host pair is delivered to the
right host along every ECMP alternative, with no drops and no loops."""

from __future__ import annotations

import itertools

import pytest

from controllers.accounting import Accounting
from controllers.ofmsg import discard_lost
from controllers.priority import make_priority
from controllers.routing import TwoLevelRouting, make_routing
from controllers.topology import Fabric
from testbed.spec.schema import DumbbellSpec, FatTreeSpec, LeafSpineSpec
from tests.fakeflow import FakeFabric
from topologies import build_topology

SPECS = [
    FatTreeSpec(k=2),
    FatTreeSpec(k=4),
    FatTreeSpec(k=6),
    LeafSpineSpec(kind="leaf-spine", spines=3, leaves=3, hosts_per_leaf=2),
    DumbbellSpec(kind="dumbbell", hosts_per_side=3),
]


def programmed(spec, routing):
    data = build_topology(spec).to_json()
    fabric = Fabric.from_json(data)
    fake = FakeFabric(data)
    none = {"policy": "none", "classes": 4, "dscp": [56, 48, 40, 32], "jobs": []}
    fake.program(
        [make_priority(fabric, none), Accounting(fabric, none), make_routing(fabric, routing)]
    )
    for switch in fake.switches.values():
        switch.apply(discard_lost())
    return data, fake


@pytest.mark.parametrize("routing", ["two-level", "ecmp"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}")
def test_every_pair_reaches_its_destination(spec, routing):
    data, fake = programmed(spec, routing)
    hosts = [h["name"] for h in data["hosts"]]
    for src, dst in itertools.permutations(hosts, 2):
        ends = fake.deliveries(src, dst, tcp_src=1000, tcp_dst=2000, ip_proto=6)
        assert ends, f"{src}->{dst}: nothing forwarded"
        assert {end for end, _ in ends} == {dst}, f"{src}->{dst}: {ends[:3]}"


@pytest.mark.parametrize("k", [4, 6])
def test_fat_tree_paths_are_shortest(k):
    data, fake = programmed(FatTreeSpec(k=k), "ecmp")
    info = {h["name"]: h for h in data["hosts"]}
    for src, dst in [("h1", "h2"), ("h1", f"h{k // 2 + 1}"), ("h1", f"h{k**3 // 4}")]:
        same_edge = info[src]["switch"] == info[dst]["switch"]
        same_pod = info[src]["pod"] == info[dst]["pod"]
        hops = 1 if same_edge else 3 if same_pod else 5
        for _, path in fake.deliveries(src, dst, ip_proto=6):
            assert len(path) == hops


def test_ecmp_spreads_over_all_core_switches():
    data, fake = programmed(FatTreeSpec(k=4), "ecmp")
    cores = {path[2] for _, path in fake.deliveries("h1", "h16", ip_proto=6)}
    assert cores == {"c1_1", "c1_2", "c2_1", "c2_2"}


def test_two_level_spreads_destinations_over_uplinks():
    """Al-Fares: from one edge switch, different host ids leave on different uplinks,
    so inter-pod traffic to a pod's hosts uses every core switch."""
    data, fake = programmed(FatTreeSpec(k=4), "two-level")
    cores = set()
    for dst in ("h13", "h14", "h15", "h16"):
        [(end, path)] = fake.deliveries("h1", dst)
        assert end == dst
        cores.add(path[2])
    assert len(cores) == 2  # h1's edge switch: 2 uplinks x 1 path each for ids 2 and 3
    everything = {
        fake.deliveries(src, dst)[0][1][2]
        for src in ("h1", "h2", "h3", "h4")
        for dst in ("h13", "h14", "h15", "h16")
    }
    assert everything == {"c1_1", "c1_2", "c2_1", "c2_2"}


def test_two_level_refuses_non_fat_tree():
    fabric = Fabric.from_json(build_topology(DumbbellSpec(kind="dumbbell")).to_json())
    with pytest.raises(ValueError):
        TwoLevelRouting(fabric)


def test_unknown_destination_is_dropped_not_flooded():
    data, fake = programmed(FatTreeSpec(k=4), "two-level")
    start = fake.switches["e0_0"]
    # The same table forwards a known remote host up (ports 1-2 face hosts)...
    known = start.forward({"eth_type": 0x0800, "ipv4_dst": fake.hosts["h16"]["ip"], "in_port": 1})
    assert known and all(port > 2 for port, _ in known)
    # ...and has no entry for an address outside the fabric, from a host or from above:
    # the packet is dropped, never flooded.
    for in_port in (1, 3):
        pkt = {"eth_type": 0x0800, "ipv4_dst": "192.168.1.1", "in_port": in_port}
        assert start.forward(pkt) == []
    assert start.forward({"eth_type": 0x0806, "in_port": 1}) == []  # ARP: no entry, dropped


def test_packets_marked_lost_are_discarded_by_the_next_switch():
    data, fake = programmed(FatTreeSpec(k=4), "two-level")
    assert {end for end, _ in fake.deliveries("h1", "h16", ip_ecn=3)} == {"drop"}
    assert {end for end, _ in fake.deliveries("h1", "h16", ip_ecn=2)} == {"h16"}  # ECT passes
