"""Topology graphs: counts, Al-Fares addressing, deterministic names/ports/dpids."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from testbed.spec.schema import DumbbellSpec, FatTreeSpec, LeafSpineSpec, LinkOverride
from topologies import build_topology


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_counts(k):
    topo = build_topology(FatTreeSpec(k=k))
    roles = Counter(s.role for s in topo.switch_info.values())
    assert roles == {"core": (k // 2) ** 2, "agg": k * k // 2, "edge": k * k // 2}
    assert len(topo.host_info) == k**3 // 4
    tiers = Counter(link.tier for link in topo.link_info)
    assert tiers == {"host": k**3 // 4, "edge": k**3 // 4, "core": k**3 // 4}


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_addressing_follows_al_fares(k):
    topo = build_topology(FatTreeSpec(k=k))
    half = k // 2
    names = topo.host_names()
    assert names == [f"h{i}" for i in range(1, k**3 // 4 + 1)]
    for n, name in enumerate(names):  # pod/rack order: h1.. fill edge 0 of pod 0 first
        pod, rest = divmod(n, half * half)
        pos, slot = divmod(rest, half)
        info = topo.host_info[name]
        assert info.ip == f"10.{pod}.{pos}.{slot + 2}"
        assert info.switch == f"e{pod}_{pos}" and info.port == slot + 1
        assert ipaddress.IPv4Address(info.ip) in ipaddress.IPv4Network("10.0.0.0/8")


@pytest.mark.parametrize("k", [4, 6, 8])
def test_every_switch_has_k_ports_numbered_1_to_k(k):
    topo = build_topology(FatTreeSpec(k=k))
    ports: dict[str, list[int]] = {s: [] for s in topo.switch_info}
    for link in topo.link_info:
        for node, port in ((link.a, link.a_port), (link.b, link.b_port)):
            if node in ports:
                ports[node].append(port)
    for switch, used in ports.items():
        assert sorted(used) == list(range(1, k + 1)), switch


def test_names_dpids_macs_unique_and_deterministic():
    a = build_topology(FatTreeSpec(k=6))
    b = build_topology(FatTreeSpec(k=6))
    assert a.to_json() == b.to_json()
    dpids = [s.dpid for s in a.switch_info.values()]
    macs = [h.mac for h in a.host_info.values()]
    assert len(set(dpids)) == len(dpids) and len(set(macs)) == len(macs)
    assert all(len(name) <= 15 - len("-eth99") for name in a.switch_info)  # Linux IFNAMSIZ


def test_tier_parameters_reach_links():
    spec = FatTreeSpec(k=4, tiers={"core": LinkOverride(bw_mbps=10, loss_pct=1)})
    topo = build_topology(spec)
    for d in topo.directions():
        assert d.params.bw_mbps == (10 if d.link.tier == "core" else 100)
        assert d.params.loss_pct == (1 if d.link.tier == "core" else 0)


def test_directed_override_changes_one_direction_only():
    spec = DumbbellSpec(
        kind="dumbbell",
        tiers={"bottleneck": LinkOverride(loss_pct=1)},
        directed=[{"src": "left", "dst": "right", "loss_pct": 5, "bw_mbps": 20}],
    )
    params = {d.name: d.params for d in build_topology(spec).directions()}
    assert params["left->right"].loss_pct == 5 and params["left->right"].bw_mbps == 20
    assert params["right->left"].loss_pct == 1 and params["right->left"].bw_mbps == 100
    assert params["h1->left"].loss_pct == 0


def test_leaf_spine_full_bipartite():
    topo = build_topology(LeafSpineSpec(kind="leaf-spine", spines=3, leaves=4, hosts_per_leaf=5))
    fabric = {(link.a, link.b) for link in topo.link_info if link.tier == "fabric"}
    assert fabric == {(f"leaf{i}", f"spine{s}") for i in range(1, 5) for s in range(1, 4)}
    assert len(topo.host_info) == 20
    assert sorted(topo.racks()) == [0, 1, 2, 3]


def test_dumbbell_has_one_bottleneck():
    topo = build_topology(DumbbellSpec(kind="dumbbell", hosts_per_side=3))
    assert [link.tier for link in topo.link_info].count("bottleneck") == 1
    assert len(topo.host_info) == 6 and set(topo.switch_info) == {"left", "right"}


def test_interface_names_are_switch_ports_only():
    topo = build_topology(FatTreeSpec(k=4))
    names = topo.interface_names()
    assert len(names) == 16 + 2 * 16 + 2 * 16  # host links have one switch end
    assert not any(n.startswith("h") for n in names)
