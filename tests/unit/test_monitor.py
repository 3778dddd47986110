"""Per-direction link summary: binomial check of measured loss, throughput figures."""

from __future__ import annotations

from testbed.network.monitor import summarize
from testbed.network.qdiscs import qdisc_stats
from testbed.results.fidelity import loss_outliers
from testbed.spec.schema import DumbbellSpec, LinkParams
from topologies import build_topology


def direction(loss_pct):
    topo = build_topology(DumbbellSpec(kind="dumbbell", link=LinkParams(loss_pct=loss_pct)))
    return next(d for d in topo.directions() if d.name == "left->right")


def row(offered, dropped):
    return {"offered_packets": offered, "loss_drops": dropped, "qdisc_drops": 0}


def entry(loss_pct, offered, dropped, name="left->right"):
    out = summarize(direction(loss_pct), row(offered, dropped), 0)
    return {**out, "direction": name}


def test_summary_gives_the_directions_own_interval():
    out = summarize(direction(1), row(20_000, 205), peak_mbps=50.0)
    assert out["measured_loss_pct"] == 1.025
    lo, hi = out["ci99_pct"]
    assert lo < 1 < hi
    assert out["configured_mbps"] == 100 and out["peak_mbps"] == 50.0


def test_loss_far_outside_the_interval_is_flagged_both_ways():
    # sd of Binomial(20000, 0.01) is ~14 packets: 300 and 120 are ~7 sd away
    assert loss_outliers([entry(1, 20_000, 300)]) == ["left->right"]
    assert loss_outliers([entry(1, 20_000, 120)]) == ["left->right"]
    assert loss_outliers([entry(1, 20_000, 205)]) == []


def test_the_interval_widens_with_the_number_of_lossy_directions():
    """240 drops is 2.8 sd above 200: outside one direction's 99% interval (2.58 sd),
    inside the Bonferroni interval of a family of 100 (1 - 0.01/100: 3.9 sd)."""
    odd = entry(1, 20_000, 240, "odd")
    assert loss_outliers([odd]) == ["odd"]
    family = [odd] + [entry(1, 20_000, 200, f"d{i}") for i in range(99)]
    assert loss_outliers(family) == []


def test_any_drop_on_a_lossless_direction_is_flagged():
    assert loss_outliers([entry(0, 1000, 1)]) == ["left->right"]
    assert loss_outliers([entry(0, 1000, 0)]) == []


def test_no_traffic_has_no_measurement():
    out = summarize(direction(5), row(0, 0), 0)
    assert out["measured_loss_pct"] is None
    assert loss_outliers([entry(5, 0, 0)]) == []


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
        {"kind": "htb", "handle": "1:", "root": True, "dev": "left-eth1", "drops": 7, "qlen": 4},
    ]  # fmt: skip
    stats = qdisc_stats(listing)
    lossy = stats["left-eth2"]
    assert lossy["netem_drops"] - lossy["htb_drops"] == 100 and lossy["backlog_pkts"] == 0
    assert lossy["bands"][1] == {"bytes": 30, "packets": 3, "drops": 15}
    assert stats["left-eth1"] == {"htb_drops": 7, "netem_drops": 0, "backlog_pkts": 4, "bands": {}}


# `tc -s class show` of two devices as _class_listing returns it (iproute2 6.1): one
# sending at its rate (link class in debt), one whose packets wait while its link class
# has tokens (a slower qdisc under the leaf), one that has drained since the qdisc read.
CLASS_LISTING = """@dev e0_0-eth1
class htb 1:10 parent 1:1 leaf 10: prio 0 rate 10Mbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 32275763 bytes 21369 pkt (dropped 0, overlimits 1843 requeues 0)
 backlog 111268b 74p requeues 0
 lended: 3260 borrowed: 0 giants: 0
 tokens: -207934 ctokens: -207934

class htb 1:1 root rate 10Mbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 32275763 bytes 21369 pkt (dropped 0, overlimits 2 requeues 0)
 backlog 0b 0p requeues 0
 lended: 0 borrowed: 0 giants: 0
 tokens: -207934 ctokens: -207934

@dev h1-eth0
class netem 5:1 parent 5: leaf 1:
class htb 1:11 parent 1:1 leaf 11: prio 1 rate 8Kbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 3633183 bytes 2412 pkt (dropped 5, overlimits 4905 requeues 0)
 backlog 134746b 89p requeues 0
 lended: 0 borrowed: 2412 giants: 0
 tokens: -9999999 ctokens: 56762

class htb 1:1 root rate 10Mbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 3633183 bytes 2412 pkt (dropped 0, overlimits 2 requeues 0)
 backlog 0b 0p requeues 0
 lended: 0 borrowed: 0 giants: 0
 tokens: 56762 ctokens: 56762

@dev a0_0-eth3
class htb 1:10 parent 1:1 leaf 10: prio 0 rate 10Mbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 100 bytes 1 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
 lended: 1 borrowed: 0 giants: 0
 tokens: 74562 ctokens: 74562

class htb 1:1 root rate 10Mbit ceil 10Mbit burst 6053b cburst 6053b
 Sent 100 bytes 1 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
 lended: 0 borrowed: 0 giants: 0
 tokens: 74562 ctokens: 74562
"""


def test_shaper_states_read_the_link_class_tokens_of_backlogged_trees():
    from testbed.network.qdiscs import shaper_states

    assert shaper_states(CLASS_LISTING) == {
        "e0_0-eth1": {"link_tokens_us": -13307.8, "held_back": 0},
        "h1-eth0": {"link_tokens_us": 3632.8, "held_back": 1},
    }  # the third had drained: no state


def test_a_batch_listing_is_split_by_its_qdisc_lines():
    """`tc -s -j -batch` prints each device's qdiscs as one JSON line, then its classes
    as text (no device name in either): the JSON lines tell the devices apart; a device
    that has gone (its lines missing) voids the whole listing rather than shift it."""
    from testbed.network.qdiscs import shaper_states, split_listing

    qdisc = '[{"kind":"htb","handle":"1:","qlen":74}]'
    blocks = CLASS_LISTING.split("@dev ")[1:3]  # e0_0-eth1 (in debt), h1-eth0 (held back)
    stdout = "".join(qdisc + "\n" + b.split("\n", 1)[1] for b in blocks)
    qdiscs, text = split_listing(stdout, ["e0_0-eth1", "h1-eth0"])
    assert [q["dev"] for q in qdiscs] == ["e0_0-eth1", "h1-eth0"]
    assert {d: s["held_back"] for d, s in shaper_states(text).items()} == {
        "e0_0-eth1": 0, "h1-eth0": 1}  # fmt: skip
    assert split_listing(stdout, ["e0_0-eth1", "h1-eth0", "gone"]) == ([], "")


# What Debian 13's tc (iproute2 6.15) printed in its guest for one host's tree, 279 of
# 3,002 datagrams lost: it prints the classes as JSON too, and the reader once took that
# line for a second device's qdiscs and voided the listing (loss_drops read 0).
TC_615 = """\
[{"kind":"netem","handle":"5:","root":true,"refcnt":3,"options":{"limit":1000000},"bytes":288558,"packets":2723,"drops":279,"overlimits":0,"requeues":0,"backlog":0,"qlen":0},{"kind":"pfifo","handle":"10:","parent":"1:10","options":{"limit":100},"bytes":288558,"packets":2723,"drops":0,"overlimits":0,"requeues":0,"backlog":0,"qlen":0},{"kind":"htb","handle":"1:","parent":"5:1","options":{"r2q":10},"bytes":288558,"packets":2723,"drops":0,"overlimits":0,"requeues":0,"backlog":0,"qlen":0}]
[{"class":"netem","handle":"5:1","parent":"5:","leaf":"0x1","stats":{}},{"class":"htb","handle":"1:10","parent":"1:1","leaf":"0x10","prio":0,"stats":{"bytes":288558,"packets":2723,"drops":0,"backlog":1514,"qlen":7,"tokens":-320,"ctokens":31117}},{"class":"htb","handle":"1:1","root":true,"stats":{"bytes":288558,"packets":2723,"drops":0,"backlog":0,"qlen":0,"tokens":31117,"ctokens":31117}}]
"""  # noqa: E501


def test_a_listing_whose_classes_are_json_reads_as_one_whose_classes_are_text():
    from testbed.network.qdiscs import qdisc_stats, shaper_states, split_listing

    qdiscs, text = split_listing(TC_615, ["h1-eth0"])
    stats = qdisc_stats(qdiscs)["h1-eth0"]
    assert (stats["netem_drops"], stats["htb_drops"]) == (279, 0)
    assert stats["bands"][0]["packets"] == 2723
    # the leaf holds 7 packets; the link class has tokens (31117 ticks of 64 ns)
    assert shaper_states(text) == {"h1-eth0": {"link_tokens_us": 1991.5, "held_back": 1}}
    two = TC_615 + TC_615.replace('"drops":279', '"drops":3')
    assert [q["dev"] for q in split_listing(two, ["a", "b"])[0] if q["kind"] == "netem"] == [
        "a", "b"]  # fmt: skip
    assert split_listing(two, ["a", "b", "gone"]) == ([], "")
