"""tc command construction: argument lists from validated numbers, no shell strings."""

from __future__ import annotations

import pytest

from testbed.network import tc
from testbed.shell import run_batch
from testbed.spec.schema import LinkParams


def flat(cmds):
    return [arg for cmd in cmds for arg in cmd]


def test_single_band_tree_shape():
    cmds = tc.link_tree("e0_0-eth1", LinkParams(bw_mbps=50, queue_pkts=64))
    assert cmds[0] == [
        "qdisc",
        "replace",
        "dev",
        "e0_0-eth1",
        "root",
        "handle",
        "1:",
        "htb",
        "default",
        "10",
    ]
    assert cmds[1][:8] == ["class", "add", "dev", "e0_0-eth1", "parent", "1:", "classid", "1:1"]
    assert cmds[2][5:8] == ["1:1", "classid", "1:10"]
    assert cmds[2][cmds[2].index("rate") + 1] == "50000kbit"  # one band owns the link
    assert cmds[3][-3:] == ["pfifo", "limit", "64"]
    assert len(cmds) == 4
    assert all(isinstance(a, str) and a and " " not in a for a in flat(cmds))


def test_bands_have_tiny_rate_full_ceil_and_increasing_prio():
    cmds = tc.link_tree("x", LinkParams(bw_mbps=20), bands=4)
    assert cmds[0][-1] == "13"  # unclassified traffic -> lowest band (hex minor, like classids)
    leaves = [
        c for c in cmds if c[:2] == ["class", "add"] and c[7].startswith("1:1") and c[7] != "1:1"
    ]
    assert [c[7] for c in leaves] == ["1:10", "1:11", "1:12", "1:13"]
    for band, cmd in enumerate(leaves):
        assert cmd[cmd.index("rate") + 1] == f"{tc.BAND_FLOOR_KBIT}kbit"
        assert cmd[cmd.index("ceil") + 1] == "20000kbit"
        assert cmd[cmd.index("prio") + 1] == str(band)
    assert sum(1 for c in cmds if c[:2] == ["qdisc", "replace"] and "parent" in c) == 4


@pytest.mark.parametrize("queue,bands", [(100, 1), (100, 4), (7, 3), (4, 4), (101, 8)])
def test_bands_split_the_port_buffer_without_changing_its_total(queue, bands):
    cmds = tc.link_tree("x", LinkParams(queue_pkts=queue), bands=bands)
    limits = [int(c[-1]) for c in cmds if c[-3:-1] == ["pfifo", "limit"]]
    assert len(limits) == bands and sum(limits) == queue
    assert max(limits) - min(limits) <= 1 and limits == sorted(limits, reverse=True)


def test_fewer_packets_than_bands_is_refused():
    with pytest.raises(ValueError, match="3 packets cannot buffer 4 bands"):
        tc.band_limits(3, 4)


@pytest.mark.parametrize(
    "params,netem_loss,seed,expected",
    [
        (LinkParams(), False, None, None),
        (LinkParams(loss_pct=1), False, None, None),  # loss is nft's job: no netem
        (LinkParams(loss_pct=1.5, queue_pkts=50), True, 7, ["loss", "random", "1.5%", "seed", "7"]),
        (LinkParams(delay_ms=5, jitter_ms=1), False, None, ["delay", "5ms", "1ms"]),
        (
            LinkParams(delay_ms=2, loss_pct=10),
            True,
            None,
            ["delay", "2ms", "loss", "random", "10%"],
        ),
    ],
)
def test_netem_goes_above_the_shaper_only_where_needed(params, netem_loss, seed, expected):
    cmds = tc.link_tree("x", params, netem_loss, seed)
    roots = [c for c in cmds if "root" in c]
    assert len(roots) == 1
    if expected is None:
        assert roots[0][roots[0].index("handle") + 1 :][:2] == ["1:", "htb"]
        return
    netem = ["netem", "limit", str(tc.DELAY_LINE_PKTS), *expected]
    assert roots[0] == ["qdisc", "replace", "dev", "x", "root", "handle", "5:", *netem]
    htb = next(c for c in cmds if "htb" in c and c[0] == "qdisc")
    assert htb[4:8] == ["parent", "5:1", "handle", "1:"]  # the shaper is netem's child
    # the buffer is the same pfifo as on any other direction
    assert cmds[-1][-3:] == ["pfifo", "limit", str(params.queue_pkts)]


@pytest.mark.parametrize(
    "mbps,text", [(0.5, "500kbit"), (100, "100000kbit"), (2.3456, "2346kbit"), (0.0001, "1kbit")]
)
def test_rate_is_integer_kbit(mbps, text):
    assert tc.rate(mbps) == text


def test_batch_refuses_arguments_with_blanks():
    with pytest.raises(ValueError):
        run_batch("tc", [["qdisc", "add", "dev", "x; rm -rf /"]])


def test_token_bucket_holds_a_few_milliseconds_of_rate():
    cmds = tc.link_tree("x", LinkParams(bw_mbps=100))
    link_class = cmds[1]
    assert link_class[link_class.index("burst") + 1] == "25000b"  # 2 ms at 100 Mb/s
    assert tc.burst(1) == f"{tc.BURST_MIN_BYTES}b"  # never below a few full frames
    deeper = tc.link_tree("x", LinkParams(bw_mbps=100), burst_ms=10)
    assert deeper[1][deeper[1].index("cburst") + 1] == "125000b"  # network.shaper_burst_ms


@pytest.mark.parametrize(
    "params",
    [
        LinkParams(),
        LinkParams(loss_pct=5),
        LinkParams(loss_pct=5, delay_ms=3),
        LinkParams(delay_ms=3),
    ],
)
@pytest.mark.parametrize("netem_loss", [False, True])
def test_switching_loss_on_changes_the_netem_the_tree_was_built_with(params, netem_loss):
    """The kernel cannot change a qdisc's kind in place (`qdisc replace ... handle 10:
    netem` over a pfifo failed on Debian 12's kernel): a direction that netem will make
    lossy has its netem, loss off, from the start; switching loss on is a `change`."""
    built = tc.link_tree("x", params, netem_loss, bands=2, loss_on=False)
    assert not any("loss" in cmd for cmd in built)
    if not (netem_loss and params.loss_pct):
        return
    switch = tc.switch_loss_on("x", params, seed=3)
    assert switch[:7] == ["qdisc", "change", "dev", "x", "root", "handle", "5:"]
    assert switch[switch.index("loss") :] == ["loss", "random", "5%", "seed", "3"]
    assert built[0][:7] == ["qdisc", "replace", "dev", "x", "root", "handle", "5:"]
    assert built[0][7:] == switch[7 : switch.index("loss")]  # same netem, loss added
