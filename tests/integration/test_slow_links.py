"""The slow-link check of the fidelity verdict on a live network: a link kept
backlogged at its rate is not flagged; a link whose shaper is starved is.

The check (`testbed.results.fidelity.slow_links`) flags a direction whose tree held
packets while its link class still had tokens, in at least 3 samples and a tenth of
its backlogged ones. Starving is done as the check's docstring describes the cause:
something other than the shaper keeps packets waiting. Here that is a token bucket at
half the link's rate put under the leaf in place of its fifo, which HTB sees as a
child that will not give up its packets. No statistical tolerance is involved: a
link at its rate is in token debt at every backlogged sample (0 held samples in
every run tried here), a starved one never is.
"""

from __future__ import annotations

import pandas as pd
import pytest

from testbed import shell
from testbed.network import tc
from testbed.network.measure import tcp_transfer
from testbed.results.fidelity import slow_links
from tests.integration.linkcheck import session

pytestmark = pytest.mark.integration

RATE_MBPS = 10
SECONDS = 12


@pytest.mark.parametrize("starved", [False, True], ids=["at-its-rate", "starved"])
def test_only_a_starved_shaper_is_a_slow_link(tmp_path, starved, no_leftovers):
    topology = {"kind": "dumbbell", "hosts_per_side": 1, "link": {"bw_mbps": RATE_MBPS}}
    tb = session(tmp_path, "starved" if starved else "at-rate", topology)
    with tb:
        core = next(d for d in tb.topo.directions() if d.name == "left->right")
        if starved:
            leaf = [
                "dev",
                tb.network.tree_interface(core),  # the sender's port, or a wire end
                "parent",
                tc.leaf_classid(0),
                "handle",
                tc.leaf_handle(0),
            ]
            shell.run(["tc", "qdisc", "del", *leaf])
            shell.run(["tc", "qdisc", "add", *leaf, "tbf", "rate", f"{RATE_MBPS // 2}mbit",
                       "burst", "6000", "limit", "150000"])  # fmt: skip
        transfer = tcp_transfer(tb.network, "h1", "h2", seconds=SECONDS)
    links = pd.read_csv(tb.run_dir / "links.csv")
    flagged = slow_links(links)
    backlogged = links.dropna(subset=["held_back"]).groupby("direction").size()
    if starved:
        assert transfer.mbps < 0.6 * RATE_MBPS, transfer
        assert list(flagged) == ["left->right"], flagged
        assert flagged["left->right"]["held_samples"] >= 0.9 * backlogged["left->right"]
    else:
        assert transfer.mbps > 0.9 * RATE_MBPS, transfer
        # the sender's own link was the bottleneck, backlogged through the transfer
        assert backlogged.get("h1->left", 0) >= SECONDS // 2, backlogged
        assert flagged == {}, flagged
