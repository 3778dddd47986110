"""How a topology splits over several servers (Mininet Cluster Edition's placers).

A placer maps every node to a server; a link whose two ends land on different servers
becomes a tunnel. Mininet ships `SwitchBinPlacer` (switches in even bins in name
order, hosts with their switch) and `RoundRobinPlacer`; `PodPlacer` is ours.

`PodPlacer` gives each server whole fat-tree pods, and spreads the core switches
evenly. Inside a pod every host-edge and edge-aggregation link stays on one server,
so the only tunnels are aggregation-core links: each core switch has one link per
pod, and the k - k/n of them that reach pods on other servers cross. That is
(k^3 / 4) x (1 - 1/n) tunnels for n servers, the fewest any placement gets while it
keeps the pods whole, and the core tier is the one oversubscribed fabrics expect to
carry less. SwitchBinPlacer's name order puts all aggregation switches first, then
cores, then edges, so it cuts the pods apart.
"""

from __future__ import annotations

from mininet.examples.cluster import Placer, RoundRobinPlacer, SwitchBinPlacer

from testbed.network.topo import mininet_topo
from topologies import GraphTopo


class PodPlacer(Placer):
    """Whole pods per server, in even contiguous bins; cores in even bins; hosts with
    their edge switch. Needs at least as many pods as servers."""

    def __init__(self, *args, topo: GraphTopo, **kwargs):
        super().__init__(*args, **kwargs)
        infos = topo.switch_info
        pods = sorted({i.pod for i in infos.values() if i.role != "core"})
        if len(pods) < len(self.servers):
            raise ValueError(f"{len(pods)} pods cannot fill {len(self.servers)} servers")
        by_pod = SwitchBinPlacer.bin(pods, self.servers)
        cores = sorted((i.index, name) for name, i in infos.items() if i.role == "core")
        by_core = SwitchBinPlacer.bin([name for _, name in cores], self.servers)
        self.placement = {
            name: by_core[name] if info.role == "core" else by_pod[info.pod]
            for name, info in infos.items()
        }
        for name, info in topo.host_info.items():
            self.placement[name] = self.placement[info.switch]

    def place(self, node: str) -> str:
        return self.placement[node]


PLACERS = {"pod": PodPlacer, "switchbin": SwitchBinPlacer, "roundrobin": RoundRobinPlacer}


def place(topo: GraphTopo, servers: list[str], placement: str) -> dict[str, str]:
    """node -> server, as MininetCluster.placeNodes would assign it (nodes in
    topo.nodes() order, each asked of the placer once)."""
    cls = PLACERS[placement]
    extra = {"topo": topo} if cls is PodPlacer else {}
    net_topo = mininet_topo(topo)
    placer = cls(
        servers=servers,
        nodes=net_topo.nodes(),
        hosts=net_topo.hosts(),
        switches=net_topo.switches(),
        links=net_topo.links(),
        **extra,
    )
    return {node: placer.place(node) for node in net_topo.nodes()}


def cross_links(topo: GraphTopo, where: dict[str, str]) -> int:
    """Links whose ends sit on different servers (each one a tunnel)."""
    return sum(where[link.a] != where[link.b] for link in topo.link_info)
