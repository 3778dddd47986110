"""The parts that let a k=16 fat-tree run on one machine and split over several: the
sampled reachability plan, one-line teardown summaries, and the cluster placers'
cross-server link counts."""

from __future__ import annotations

from collections import Counter

import pytest

from testbed.ledger import summarize_removed
from testbed.network import reach
from testbed.network.partition import cross_links, place
from testbed.spec.schema import FatTreeSpec
from topologies import build_topology


def fat_tree(k: int):
    return build_topology(FatTreeSpec.model_construct(**{**FatTreeSpec().model_dump(), "k": k}))


def test_small_fabrics_check_every_pair():
    names = [f"h{i}" for i in range(1, 129)]
    plan = reach.probe_plan(names, 1)
    assert sum(map(len, plan.values())) == 128 * 127
    assert reach.describe(plan)["mode"] == "all pairs"


def test_large_fabrics_check_a_balanced_seeded_sample():
    names = [f"h{i}" for i in range(1, 1025)]
    plan = reach.probe_plan(names, 1)
    assert plan == reach.probe_plan(names, 1)  # seeded
    assert all(len(set(t)) == reach.SAMPLE_TARGETS and a not in t for a, t in plan.items())
    as_destination = Counter(d for targets in plan.values() for d in targets)
    assert set(as_destination.values()) == {reach.SAMPLE_TARGETS}  # each reached 8 times
    assert all(plan[a][0] == names[(i + 1) % 1024] for i, a in enumerate(names))
    info = reach.describe(plan)
    assert (info["mode"], info["pairs"], info["all_pairs"]) == ("sample", 8192, 1024 * 1023)
    assert "Not proven" in info["proves"]


def test_a_teardown_summary_is_one_short_line():
    removed = [f"bridge s{i}" for i in range(320)] + [f"interface i{i}" for i in range(6000)]
    removed += ["process group 12"]
    line = summarize_removed(removed)
    assert line.startswith("320 bridges, 6000 interfaces, 1 process group (bridge s0, ")
    assert len(line) < 200 and "\n" not in line


@pytest.mark.parametrize("k,servers", [(4, 2), (8, 4), (16, 2), (16, 16)])
def test_pod_placement_cuts_only_core_links_and_the_fewest(k, servers):
    topo = fat_tree(k)
    names = [f"s{i}" for i in range(servers)]
    where = place(topo, names, "pod")
    assert cross_links(topo, where) == k**3 // 4 * (servers - 1) // servers
    assert all(where[link.a] == where[link.b] for link in topo.link_info if link.tier != "core")
    hosts_per_server = Counter(where[h] for h in topo.host_info)
    assert set(hosts_per_server.values()) == {k**3 // 4 // servers}  # even
    for other in ("switchbin", "roundrobin"):
        assert cross_links(topo, place(topo, names, other)) > cross_links(topo, where)


def test_pod_placement_refuses_more_servers_than_pods():
    with pytest.raises(ValueError, match="4 pods cannot fill 8 servers"):
        place(fat_tree(4), [f"s{i}" for i in range(8)], "pod")


def test_a_failed_long_command_is_reported_in_one_short_line():
    from testbed import shell
    from testbed.errors import TestbedError

    with pytest.raises(TestbedError) as err:
        shell.run(["false", *(f"bridge{i}" for i in range(5000))])
    assert len(str(err.value)) < 300 and "(5001 arguments)" in str(err.value)
