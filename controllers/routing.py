"""Proactive IPv4 routing policies: plain objects that return OpenFlow messages.

- `TwoLevelRouting`: Al-Fares' two-level prefix/suffix tables for a fat-tree.
  Table 1 holds the prefixes (terminating /32s at edges, pod /24s at aggregation,
  pod /16s at cores); its catch-all jumps to table 2, whose suffix entries
  (host id, mask 0.0.0.255) spread upward traffic over the uplinks.
- `ShortestPathRouting`: any topology. Per destination host, every switch forwards
  over its ports on shortest paths; with ``ecmp`` several such ports become an
  OpenFlow select group (flows hashed over them), otherwise one port is picked by
  the destination's host index (a static spread, the two-level idea in general).

Hosts have static ARP entries, so no packet-in is needed for IPv4 traffic.
"""

from __future__ import annotations

import ipaddress

from controllers.ofmsg import (
    ROUTE_TABLE,
    SUFFIX_TABLE,
    flow,
    ipv4,
    output,
    select_group,
    to_group,
)
from controllers.topology import Fabric

# Priorities inside the route table: longer prefixes win, as in a router's FIB.
PREFIX_BASE = 100


class TwoLevelRouting:
    """Al-Fares two-level routing for the k-ary fat-tree built by `topologies.fattree`."""

    name = "two-level"

    def __init__(self, fabric: Fabric):
        if fabric.kind != "fat-tree":
            raise ValueError("two-level tables are defined for fat-trees only")
        self.fabric = fabric
        self.k = int(fabric.params["k"])

    def messages(self, switch: str) -> list:
        """The route-table flow-mods `switch` needs."""
        record = self.fabric.switches[switch]
        role, pod, pos = record["role"], record["pod"], record["index"]
        half = self.k // 2
        msgs: list = []
        if role == "core":
            # Core (j, m) reaches pod p on port p+1.
            for p in range(self.k):
                msgs.append(_prefix(f"10.{p}.0.0", 16, p + 1))
            return msgs
        if role == "edge":
            for slot in range(half):
                msgs.append(_prefix(f"10.{pod}.{pos}.{slot + 2}", 32, slot + 1))
            shift = pos
        else:  # aggregation at position pos is Al-Fares switch s = k/2 + pos
            for edge in range(half):
                msgs.append(_prefix(f"10.{pod}.{edge}.0", 24, edge + 1))
            shift = half + pos
        msgs.append(flow(ROUTE_TABLE, PREFIX_BASE, ipv4(), goto=SUFFIX_TABLE))
        for host_id in range(2, half + 2):
            uplink = (host_id - 2 + shift) % half + half + 1
            msgs.append(
                flow(
                    SUFFIX_TABLE,
                    PREFIX_BASE + 8,
                    ipv4(f"0.0.0.{host_id}", "0.0.0.255"),
                    [output(uplink)],
                )
            )
        return msgs


class ShortestPathRouting:
    """Per-destination shortest-path routing; ECMP select groups when `ecmp`."""

    def __init__(self, fabric: Fabric, ecmp: bool):
        self.fabric = fabric
        self.ecmp = ecmp
        self.name = "ecmp" if ecmp else "two-level"
        self._dist = {h.switch: fabric.hops_to(h.switch) for h in fabric.hosts}

    def next_ports(self, switch: str, host) -> list[int]:
        """Ports of `switch` on a shortest path towards `host`, in port order."""
        if switch == host.switch:
            return [host.port]
        dist = self._dist[host.switch]
        return sorted(
            port
            for neighbor, port in self.fabric.switch_neighbors(switch).items()
            if dist.get(neighbor, 1 << 30) == dist[switch] - 1
        )

    def messages(self, switch: str) -> list:
        """Flow-mods (and select groups) for every destination host at `switch`."""
        msgs: list = []
        groups: dict[tuple[int, ...], int] = {}
        for host in self.fabric.hosts:
            ports = self.next_ports(switch, host)
            if len(ports) == 1 or not self.ecmp:
                action = output(ports[host.index % len(ports)])
            else:
                key = tuple(ports)
                if key not in groups:
                    groups[key] = len(groups) + 1
                    msgs.append(select_group(groups[key], list(key)))
                action = to_group(groups[key])
            msgs.append(flow(ROUTE_TABLE, PREFIX_BASE + 32, ipv4(host.ip), [action]))
        return msgs


def _prefix(address: str, length: int, port: int):
    mask = str(ipaddress.IPv4Network(f"{address}/{length}").netmask)
    return flow(ROUTE_TABLE, PREFIX_BASE + length, ipv4(address, mask), [output(port)])


def make_routing(fabric: Fabric, name: str):
    """The routing policy `name` (spec `controller.routing`) for `fabric`."""
    if name == "two-level" and fabric.kind == "fat-tree":
        return TwoLevelRouting(fabric)
    if name in ("two-level", "ecmp"):
        return ShortestPathRouting(fabric, ecmp=name == "ecmp")
    raise ValueError(f"unknown routing {name!r}; expected two-level or ecmp")
