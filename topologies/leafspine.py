"""Two-tier leaf-spine (folded Clos): every leaf connects to every spine.

Leaf L (1-based) holds hosts 10.0.L.2.. on ports 1..hosts_per_leaf; spine S is on
leaf port hosts_per_leaf+S; leaf L is on spine port L.
"""

from __future__ import annotations

from topologies.base import GraphTopo, HostInfo, SwitchInfo, mac_for, make_dpid


class LeafSpine(GraphTopo):
    """Leaf-spine with tiers host (host-leaf) and fabric (leaf-spine)."""

    kind = "leaf-spine"

    def build(self) -> None:
        spec = self.spec
        for s in range(1, spec.spines + 1):
            self.add_switch(SwitchInfo(f"spine{s}", make_dpid("spine", 0, s), "spine", 0, s))
        number = 1
        for leaf in range(1, spec.leaves + 1):
            name = f"leaf{leaf}"
            self.add_switch(SwitchInfo(name, make_dpid("leaf", 0, leaf), "leaf", leaf - 1, leaf))
            for slot in range(spec.hosts_per_leaf):
                ip = f"10.0.{leaf}.{slot + 2}"
                host = f"h{number}"
                number += 1
                self.add_host(HostInfo(host, ip, mac_for(ip), name, slot + 1, leaf - 1, leaf - 1))
                self.add_link(host, 0, name, slot + 1, "host")
            for s in range(1, spec.spines + 1):
                self.add_link(name, spec.hosts_per_leaf + s, f"spine{s}", leaf, "fabric")
