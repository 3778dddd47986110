"""tc command construction: argument lists from validated numbers, no shell strings."""

from __future__ import annotations

import pytest

from testbed.network import tc
from testbed.shell import run_batch
from testbed.spec.schema import LinkParams


def test_shaping_tree_shape():
    cmds = tc.shaping_tree("e0_0-eth1", LinkParams(bw_mbps=50, queue_pkts=64))
    assert cmds[0] == ["qdisc", "replace", "dev", "e0_0-eth1", "root", "handle", "1:", "htb",
                       "default", "10"]
    assert cmds[1][:8] == ["class", "add", "dev", "e0_0-eth1", "parent", "1:", "classid", "1:1"]
    assert "50000kbit" in cmds[1] and "50000kbit" in cmds[2]
    assert cmds[2][5:8] == ["1:1", "classid", "1:10"]
    assert cmds[3][-3:] == ["pfifo", "limit", "64"]
    assert all(isinstance(a, str) and a and " " not in a for cmd in cmds for a in cmd)


@pytest.mark.parametrize("mbps,text", [(0.5, "500kbit"), (100, "100000kbit"), (2.3456, "2346kbit"),
                                       (0.0001, "1kbit")])
def test_rate_is_integer_kbit(mbps, text):
    assert tc.rate(mbps) == text


def test_batch_refuses_arguments_with_blanks():
    with pytest.raises(ValueError):
        run_batch("tc", [["qdisc", "add", "dev", "x; rm -rf /"]])
