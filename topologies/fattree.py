"""Al-Fares k-ary fat-tree ("A Scalable, Commodity Data Center Network Architecture").

k pods, each with k/2 edge and k/2 aggregation switches; (k/2)^2 core switches;
k/2 hosts per edge switch, k^3/4 hosts in all. Addresses follow the paper:
host 10.pod.switch.id (id 2..k/2+1). Port numbers are fixed so that the controller's
two-level tables can be computed from positions alone:

- edge (pod p, position s): hosts on ports 1..k/2, aggregation i on port k/2+1+i
- aggregation (pod p, position i): edge e on port 1+e, core (i, m) on port k/2+1+m
- core (j, m) (1-based in names): pod p on port p+1
"""

from __future__ import annotations

from topologies.base import GraphTopo, HostInfo, SwitchInfo, mac_for, make_dpid


def edge_name(pod: int, pos: int) -> str:
    return f"e{pod}_{pos}"


def agg_name(pod: int, pos: int) -> str:
    return f"a{pod}_{pos}"


def core_name(group: int, member: int) -> str:
    return f"c{group + 1}_{member + 1}"


class FatTree(GraphTopo):
    """k-ary fat-tree with tiers host (host-edge), edge (edge-agg), core (agg-core)."""

    kind = "fat-tree"

    def arity(self) -> int:
        return self.spec.k

    def build(self) -> None:
        k = self.spec.k
        half = k // 2
        for group in range(half):
            for member in range(half):
                name = core_name(group, member)
                self.add_switch(
                    SwitchInfo(
                        name, make_dpid("core", group, member), "core", k, group * half + member
                    )
                )
        number = 1
        for pod in range(k):
            for pos in range(half):
                self.add_switch(
                    SwitchInfo(edge_name(pod, pos), make_dpid("edge", pod, pos), "edge", pod, pos)
                )
                self.add_switch(
                    SwitchInfo(agg_name(pod, pos), make_dpid("agg", pod, pos), "agg", pod, pos)
                )
            for pos in range(half):
                for slot in range(half):
                    ip = f"10.{pod}.{pos}.{slot + 2}"
                    name = f"h{number}"
                    number += 1
                    info = HostInfo(
                        name, ip, mac_for(ip), edge_name(pod, pos), slot + 1, pod * half + pos, pod
                    )
                    self.add_host(info)
                    self.add_link(name, 0, info.switch, info.port, "host")
            for pos in range(half):
                for agg in range(half):
                    self.add_link(
                        edge_name(pod, pos), half + 1 + agg, agg_name(pod, agg), 1 + pos, "edge"
                    )
            for agg in range(half):
                for member in range(half):
                    self.add_link(
                        agg_name(pod, agg),
                        half + 1 + member,
                        core_name(agg, member),
                        pod + 1,
                        "core",
                    )
