"""Aggregation trees (testbed.jobs.trees): spanning, in-degree bounded, rack-local."""

from __future__ import annotations

import pytest

from testbed.jobs.trees import build_trees, racks_of
from testbed.spec import validate
from testbed.spec.placement import place
from topologies import build_topology


def job_trees(aggregation, workers=12, servers=1, placement="spread", topology=None):
    exp = validate(
        {
            "name": "t",
            "topology": topology or {"kind": "fat-tree", "k": 4},
            "jobs": [
                {
                    "name": "a",
                    "workers": workers,
                    "servers": servers,
                    "placement": placement,
                    "aggregation": aggregation,
                }
            ],
        },
        "test",
    )
    topo = build_topology(exp.topology)
    placed = place(exp, topo)["a"]
    hosts = {f"worker{r}": h for r, h in enumerate(placed.workers)}
    hosts.update({f"server{s}": h for s, h in enumerate(placed.servers)})
    return build_trees(exp.jobs[0], placed, racks_of(topo)), hosts, topo


def reaches_root(tree, node):
    seen = set()
    while node != tree.root:
        assert node not in seen, f"cycle through {node}"
        seen.add(node)
        node = tree.parent[node]
    return True


def test_none_builds_no_tree():
    assert job_trees("none")[0] == []


@pytest.mark.parametrize("aggregation", ["rack", "binary", {"fanin": 3}, {"fanin": 20}])
@pytest.mark.parametrize("servers", [1, 3])
def test_every_tree_spans_every_worker_once(aggregation, servers):
    trees, _, _ = job_trees(aggregation, servers=servers)
    assert len(trees) == servers
    for tree in trees:
        assert sorted(tree.parent) == sorted(f"worker{r}" for r in range(12))
        assert all(reaches_root(tree, w) for w in tree.parent)
        assert tree.subtree(tree.root) == 12


@pytest.mark.parametrize("aggregation,fanin", [("binary", 2), ({"fanin": 3}, 3)])
def test_fanin_bounds_every_in_degree(aggregation, fanin):
    (tree,), _, _ = job_trees(aggregation)
    assert tree.in_degree() == fanin  # 12 workers fill every level but the last


def test_rack_tree_has_one_aggregator_per_rack():
    (tree,), hosts, topo = job_trees("rack")
    rack = {n: topo.host_info[h].switch for n, h in hosts.items()}
    heads = tree.children(tree.root)
    assert sorted(rack[h] for h in heads) == sorted({rack[w] for w in tree.parent})
    for worker, parent in tree.parent.items():
        if parent != tree.root:
            assert rack[parent] == rack[worker] and parent in heads


def test_trees_of_different_servers_spread_the_aggregation():
    trees, _, _ = job_trees("rack", workers=12, servers=2, placement="pack")
    inner = [{n for n in t.parent if t.children(n)} for t in trees]
    assert inner[0] and inner[0] != inner[1]


def cross_pod_edges(tree, hosts, topo):
    pod = {n: topo.host_info[h].pod for n, h in hosts.items()}
    return sum(pod[w] != pod[p] for w, p in tree.parent.items())


def test_rack_and_binary_trees_cross_the_core_less_than_direct_pushes():
    """Spread on k=4: the server is alone in pod 0 with 3 workers; 9 workers in 6 racks
    of pods 1-3. Direct pushes: 9 core crossings; rack: 6 (one per rack); binary: its
    contiguous subtrees keep most edges inside a pod."""
    (rack,), hosts, topo = job_trees("rack")
    (binary,), _, _ = job_trees("binary")
    direct = sum(topo.host_info[h].pod != 0 for n, h in hosts.items() if n.startswith("worker"))
    assert (direct, cross_pod_edges(rack, hosts, topo)) == (9, 6)
    assert cross_pod_edges(binary, hosts, topo) < 6


def test_leaf_spine_racks_are_leaves():
    (tree,), hosts, topo = job_trees(
        "rack",
        workers=11,
        topology={"kind": "leaf-spine", "leaves": 3, "spines": 2, "hosts_per_leaf": 4},
    )
    assert len(tree.children(tree.root)) == 3
    assert tree.as_dict(hosts)  # parent -> children, with hosts
