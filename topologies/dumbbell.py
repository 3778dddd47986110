"""Dumbbell: two switches joined by one bottleneck link, for small tests.

Left hosts 10.0.1.2.., right hosts 10.0.2.2..; the bottleneck uses port
hosts_per_side+1 on both switches.
"""

from __future__ import annotations

from topologies.base import GraphTopo, HostInfo, SwitchInfo, mac_for, make_dpid


class Dumbbell(GraphTopo):
    """Dumbbell with tiers host and bottleneck."""

    kind = "dumbbell"

    def build(self) -> None:
        n = self.spec.hosts_per_side
        number = 1
        for side, name in enumerate(("left", "right")):
            self.add_switch(
                SwitchInfo(name, make_dpid("dumbbell", 0, side + 1), "leaf", side, side + 1)
            )
            for slot in range(n):
                ip = f"10.0.{side + 1}.{slot + 2}"
                host = f"h{number}"
                number += 1
                self.add_host(HostInfo(host, ip, mac_for(ip), name, slot + 1, side, side))
                self.add_link(host, 0, name, slot + 1, "host")
        self.add_link("left", n + 1, "right", n + 1, "bottleneck")
