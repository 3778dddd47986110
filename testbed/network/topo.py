"""The adapter between a pure topology graph (`topologies`) and Mininet's `Topo`."""

from __future__ import annotations

from mininet.topo import Topo

from topologies import GraphTopo


def mininet_topo(graph: GraphTopo) -> Topo:
    """A Mininet `Topo` with `graph`'s nodes and links: hosts get only what Mininet's
    Host accepts (address, MAC), switches their deterministic dpid."""
    topo = Topo()
    for info in graph.switch_info.values():
        topo.addSwitch(info.name, dpid=f"{info.dpid:016x}")
    for info in graph.host_info.values():
        topo.addHost(info.name, ip=f"{info.ip}/{graph.prefix_len}", mac=info.mac)
    for link in graph.link_info:
        topo.addLink(link.a, link.b, port1=link.a_port, port2=link.b_port)
    return topo
