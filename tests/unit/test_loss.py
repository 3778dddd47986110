"""nftables loss rules: placed where drops are real network loss, counted per direction."""

from __future__ import annotations

import pytest

from testbed.errors import SpecError
from testbed.network import loss, wire
from testbed.network.plane import Plane
from testbed.platform import Platform
from testbed.preflight import check_features
from testbed.spec import validate
from testbed.spec.schema import DumbbellSpec, FatTreeSpec, LinkOverride, LinkParams
from topologies import build_topology


def dumbbell(**link):
    return build_topology(DumbbellSpec(kind="dumbbell", hosts_per_side=2, link=LinkParams(**link)))


def test_no_loss_no_rules():
    assert loss.plan(dumbbell()) == {}


def test_each_direction_is_marked_at_its_own_egress_namespace():
    plans = loss.plan(dumbbell(loss_pct=1))
    root = plans[None]
    assert [d.name for d in root.mark["egress", "left-eth3"]] == ["left->right"]
    assert [d.name for d in root.mark["egress", "right-eth1"]] == ["right->h3"]
    # a host's own direction is marked inside the host's namespace, on its interface
    assert [d.name for d in plans["h1"].mark["egress", "h1-eth0"]] == ["h1->left"]
    marked = [d.name for ns in plans.values() for ds in ns.mark.values() for d in ds]
    assert len(marked) == len(set(marked)) == 10  # 5 links x 2 directions, each once


def test_on_afxdp_ports_a_switch_marks_at_its_wire_end_before_the_wire_forwards():
    """AF_XDP transmit skips the egress hook, so a switch's output is marked where it
    reaches the port's wire end, in a chain that runs before the wire's fwd (prio 0)."""
    plans = loss.plan(dumbbell(loss_pct=1), Plane("afxdp"))
    assert [d.name for d in plans[None].mark["ingress", "left-w3"]] == ["left->right"]
    assert [d.name for d in plans["h1"].mark["egress", "h1-eth0"]] == ["h1->left"]
    assert plans["h3"].discard == ["h3-eth0"]
    chains = [
        c["add"]["chain"] for c in loss.ruleset(plans[None], "t")["nftables"] if "chain" in c["add"]
    ]
    assert {(c["hook"], c["prio"]) for c in chains} == {("ingress", -10)}
    wires = wire.ruleset(Plane("afxdp").wires(dumbbell()), "t")["nftables"]
    assert {c["add"]["chain"]["prio"] for c in wires if "chain" in c["add"]} == {0}
    assert not {c["name"] for c in chains} & {
        c["add"]["chain"]["name"] for c in wires if "chain" in c["add"]
    }


def test_hosts_discard_what_their_switch_marked_lost():
    plans = loss.plan(dumbbell(loss_pct=1))
    assert plans["h3"].discard == ["h3-eth0"]
    assert plans[None].discard == []  # switches discard by an OpenFlow entry


def test_only_tier_with_loss_gets_rules():
    topo = build_topology(FatTreeSpec(k=4, tiers={"core": LinkOverride(loss_pct=2)}))
    plans = loss.plan(topo)
    assert set(plans) == {None}
    names = {d.name for ds in plans[None].mark.values() for d in ds}
    assert names == {d.name for d in topo.directions() if d.link.tier == "core"}
    assert len(names) == 32


def test_ruleset_counts_and_marks_with_threshold_never_drops_at_sender():
    ns = loss.plan(dumbbell(loss_pct=2.5))[None]
    doc = loss.ruleset(ns, "mlnet_t")["nftables"]
    assert doc[0] == {"add": {"table": {"family": "netdev", "name": "mlnet_t"}}}
    chains = [c["add"]["chain"] for c in doc if "chain" in c["add"]]
    assert {c["hook"] for c in chains} == {"egress"}
    rules = [c["add"]["rule"] for c in doc if "rule" in c["add"]]
    marks = [r for r in rules if r["comment"].startswith("loss ")]
    offered = [r for r in rules if r["comment"].startswith("offered ")]
    assert len(marks) == len(offered) == 6
    for rule in marks:
        draw = next(
            e["match"] for e in rule["expr"] if "match" in e and "numgen" in e["match"]["left"]
        )
        assert draw["right"] == 25_000 and draw["left"]["numgen"]["mod"] == loss.SCALE
        assert rule["expr"][-1]["mangle"]["value"] == "ce"
    assert not any({"drop": None} in r["expr"] for r in rules)


def test_host_ruleset_discards_lost_packets_on_ingress():
    ns = loss.plan(dumbbell(loss_pct=1))["h3"]
    doc = loss.ruleset(ns, "t")["nftables"]
    ingress = [
        c["add"]["chain"]
        for c in doc
        if "chain" in c["add"] and c["add"]["chain"]["hook"] == "ingress"
    ]
    assert [c["dev"] for c in ingress] == ["h3-eth0"]
    discard = [
        c["add"]["rule"]
        for c in doc
        if "rule" in c["add"] and c["add"]["rule"]["comment"].startswith("discard")
    ]
    assert discard[0]["expr"][-1] == {"drop": None}


def test_parse_counters_sums_per_direction():
    listing = {
        "nftables": [
            {"metainfo": {}},
            {
                "rule": {
                    "comment": "offered h1->left",
                    "expr": [{"counter": {"packets": 10, "bytes": 1}}],
                }
            },
            {
                "rule": {
                    "comment": "offered h1->left",
                    "expr": [{"counter": {"packets": 5, "bytes": 1}}],
                }
            },
            {
                "rule": {
                    "comment": "loss h1->left",
                    "expr": [
                        {"match": {}},
                        {"counter": {"packets": 2, "bytes": 1}},
                        {"drop": None},
                    ],
                }
            },
            {
                "rule": {
                    "comment": "loss left->right",
                    "expr": [{"counter": {"packets": 1, "bytes": 1}}],
                }
            },
            {
                "rule": {
                    "comment": "discard h3-eth0",
                    "expr": [{"counter": {"packets": 9, "bytes": 1}}],
                }
            },
        ]
    }
    counters = loss.parse_counters(listing)
    assert counters["h1->left"] == loss.LossCounters(15, 2)
    assert counters["left->right"] == loss.LossCounters(0, 1)
    assert "h3-eth0" not in counters


def platform(netem: bool, nft: bool = True) -> Platform:
    return Platform(
        root=True,
        ovs_running=True,
        ovs_kernel_module=False,
        netem=netem,
        netem_seed=netem,
        nftables_egress=nft,
        tcp_congestion_controls=("cubic",),
    )


def test_backend_choice():
    assert platform(True).loss_backend("auto")[0] == "netem"
    assert platform(False).loss_backend("auto")[0] == "nftables"
    assert platform(True).loss_backend("nftables") == ("nftables", "requested by the spec")
    assert "not available" in platform(False).loss_backend("auto")[1]


def spec(**topology):
    return validate(
        {
            "name": "x",
            "topology": {"kind": "dumbbell", **topology},
            "jobs": [{"name": "a", "workers": 1}],
        },
        "s.yaml",
    )


def test_delay_without_netem_is_an_error_naming_the_key():
    exp = spec(tiers={"bottleneck": {"delay_ms": 5}})
    with pytest.raises(SpecError, match=r"topology\.tiers\.bottleneck\.delay_ms = 5\.0: .*netem"):
        check_features(exp, "s.yaml", platform(False))
    check_features(exp, "s.yaml", platform(True))  # fine where netem exists


def test_netem_backend_requested_without_netem_is_an_error():
    exp = validate(
        {
            "name": "x",
            "topology": {"kind": "dumbbell"},
            "network": {"loss_backend": "netem"},
            "jobs": [{"name": "a", "workers": 1}],
        },
        "s.yaml",
    )
    with pytest.raises(SpecError, match=r"network\.loss_backend = 'netem'"):
        check_features(exp, "s.yaml", platform(False))


def test_loss_without_nft_egress_is_an_error():
    exp = spec(link={"loss_pct": 1})
    with pytest.raises(SpecError, match=r"topology\.link\.loss_pct = 1\.0"):
        check_features(exp, "s.yaml", platform(False, nft=False))
