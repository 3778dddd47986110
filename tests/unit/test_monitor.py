"""Per-direction link summary: binomial check of measured loss, throughput figures."""

from __future__ import annotations

from testbed.network.monitor import qdisc_stats, summarize
from testbed.spec.schema import DumbbellSpec, LinkParams
from topologies import build_topology


def direction(loss_pct):
    topo = build_topology(DumbbellSpec(kind="dumbbell", link=LinkParams(loss_pct=loss_pct)))
    return next(d for d in topo.directions() if d.name == "left->right")


def row(offered, dropped):
    return {"offered_packets": offered, "loss_drops": dropped, "qdisc_drops": 0}


def test_loss_inside_interval_is_not_flagged():
    out = summarize(direction(1), row(20_000, 205), peak_mbps=50.0)
    assert out["measured_loss_pct"] == 1.025 and not out["outside_ci99"]
    lo, hi = out["ci99_pct"]
    assert lo < 1 < hi
    assert out["configured_mbps"] == 100 and out["peak_mbps"] == 50.0


def test_loss_outside_interval_is_flagged_both_ways():
    # sd of Binomial(20000, 0.01) is ~14 packets: 300 and 120 are ~7 sd away
    assert summarize(direction(1), row(20_000, 300), 0)["outside_ci99"]
    assert summarize(direction(1), row(20_000, 120), 0)["outside_ci99"]


def test_any_drop_on_a_lossless_direction_is_flagged():
    assert summarize(direction(0), row(1000, 1), 0)["outside_ci99"]
    assert not summarize(direction(0), row(1000, 0), 0)["outside_ci99"]


def test_no_traffic_has_no_measurement():
    out = summarize(direction(5), row(0, 0), 0)
    assert out["measured_loss_pct"] is None and not out["outside_ci99"]


def test_netem_loss_is_netem_drops_beyond_its_child_htbs():
    """`tc -s -j qdisc show` of a lossy netem direction with 2 bands (as Linux 6.1 lists
    it): netem counts 100 losses plus the 20 overflows its child HTB counted."""
    listing = [
        {"kind": "netem", "handle": "5:", "root": True, "dev": "left-eth2", "drops": 120},
        {"kind": "htb", "handle": "1:", "parent": "5:1", "dev": "left-eth2", "drops": 20},
        {"kind": "pfifo", "handle": "10:", "parent": "1:10", "dev": "left-eth2",
         "drops": 5, "bytes": 10, "packets": 1},
        {"kind": "pfifo", "handle": "11:", "parent": "1:11", "dev": "left-eth2",
         "drops": 15, "bytes": 30, "packets": 3},
        {"kind": "htb", "handle": "1:", "root": True, "dev": "left-eth1", "drops": 7},
    ]  # fmt: skip
    stats = qdisc_stats(listing)
    lossy = stats["left-eth2"]
    assert lossy["netem_drops"] - lossy["htb_drops"] == 100
    assert lossy["bands"][1] == {"bytes": 30, "packets": 3, "drops": 15}
    assert stats["left-eth1"] == {"htb_drops": 7, "netem_drops": 0, "bands": {}}
