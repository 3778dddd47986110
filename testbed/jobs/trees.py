"""MLNET's aggregation trees: which worker sends its gradient shard to whom.

A parameter-server job with ``aggregation`` other than ``none`` gets one spanning
tree per server shard, rooted at that server (MLNET §3.1 builds a tree per server).
Inner nodes are the job's own workers: an aggregator adds its children's gradients
to its own and sends one message up (push); on the way down it forwards the fresh
parameters to its children (pull, the multicast). Pure data: built from the
placement and each host's rack, tested without a network.

- ``rack``: in every rack (edge switch of a fat-tree, leaf of a leaf-spine) one of
  the job's workers aggregates the others there; the aggregators are the server's
  children. A rack with a single worker sends straight to the server.
- ``binary`` / ``{fanin: d}``: in-degree at most d everywhere. The workers are
  ordered by (pod, rack, host), so that neighbours in the list share a rack or pod,
  and the list is cut into d contiguous groups, each of which forms a subtree in the
  same way: a subtree covers as few racks and pods as the in-degree allows, which
  keeps its inner edges off the upper tiers.

With several servers the trees differ only in who aggregates: tree s picks the
(s mod n)-th candidate of each group, so the adding work (and the aggregators'
links) is spread over the workers instead of falling on the same few for every
shard.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.spec.placement import Placement
from testbed.spec.schema import JobSpec


@dataclass(frozen=True)
class Tree:
    """The tree of one server shard; nodes are labels ``server<s>`` / ``worker<r>``."""

    shard: int
    parent: dict[str, str]  # every worker -> its parent

    @property
    def root(self) -> str:
        return f"server{self.shard}"

    def children(self, node: str) -> list[str]:
        """Direct children of `node`, in rank order."""
        return sorted((c for c, p in self.parent.items() if p == node), key=_rank)

    def subtree(self, node: str) -> int:
        """Workers in the subtree under `node`, itself included if it is a worker."""
        own = 0 if node == self.root else 1
        return own + sum(self.subtree(c) for c in self.children(node))

    def in_degree(self) -> int:
        return max(len(self.children(n)) for n in [self.root, *self.parent])

    def as_dict(self, hosts: dict[str, str]) -> dict[str, list[str]]:
        """parent -> children with hosts (``worker1@h3``), for metadata.json."""
        label = lambda n: f"{n}@{hosts[n]}"  # noqa: E731
        nodes = [self.root, *sorted(self.parent, key=_rank)]
        return {label(n): [label(c) for c in self.children(n)] for n in nodes if self.children(n)}


def _rank(label: str) -> int:
    return int(label.removeprefix("worker").removeprefix("server"))


def build_trees(
    job: JobSpec, placement: Placement, racks: dict[str, tuple[int, int]]
) -> list[Tree]:
    """One tree per server of `job`, or [] for ``aggregation: none``.

    `racks` maps each host to its (pod, rack) (`HostInfo.pod`, `HostInfo.rack`)."""
    if job.aggregation == "none":
        return []
    workers = [f"worker{r}" for r in range(len(placement.workers))]
    where = {f"worker{r}": racks[h] for r, h in enumerate(placement.workers)}
    ordered = sorted(workers, key=lambda w: (where[w], _rank(w)))
    trees = []
    for s in range(len(placement.servers)):
        parent: dict[str, str] = {}
        if job.aggregation == "rack":
            _rack_tree(ordered, where, s, parent)
        else:
            _attach(f"server{s}", ordered, job.fanin, s, parent)
        trees.append(Tree(s, parent))
    return trees


def _rack_tree(ordered: list[str], where: dict, s: int, parent: dict[str, str]) -> None:
    for rack in sorted({where[w] for w in ordered}):
        members = [w for w in ordered if where[w] == rack]
        head = members[s % len(members)]
        parent[head] = f"server{s}"
        for w in members:
            if w != head:
                parent[w] = head


def _attach(node: str, nodes: list[str], fanin: int, s: int, parent: dict[str, str]) -> None:
    """Hang `nodes` under `node` as at most `fanin` contiguous subtrees."""
    if not nodes:
        return
    groups = min(fanin, len(nodes))
    bounds = [round(i * len(nodes) / groups) for i in range(groups + 1)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        group = nodes[lo:hi]
        head = group[s % len(group)]
        parent[head] = node
        _attach(head, [w for w in group if w != head], fanin, s, parent)


def racks_of(topo) -> dict[str, tuple[int, int]]:
    """Every host's (pod, rack) in a `GraphTopo`."""
    return {name: (info.pod, info.rack) for name, info in topo.host_info.items()}


def plan_edges(trees: list[Tree], addr) -> dict[str, list[dict]]:
    """Each node's `testbed.training.tree.Edges` (as dicts) in every tree it is in.

    `addr(label, shard)` is the [ip, port] where `label` listens in `shard`'s tree.
    A server appears in its own tree only; a worker in every tree."""
    plan: dict[str, list[dict]] = {}
    for tree in trees:
        s = tree.shard
        for node in [tree.root, *sorted(tree.parent, key=_rank)]:
            edges = {
                "shard": s,
                "children": [[_rank(c), tree.subtree(c)] for c in tree.children(node)],
                "port": addr(node, s)[1],
            }
            if node != tree.root:
                edges["parent"] = addr(tree.parent[node], s)
                edges["parent_label"] = tree.parent[node]
            plan.setdefault(node, []).append(edges)
    return plan
