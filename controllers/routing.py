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
    """Per-destination shortest-path routing; ECMP select groups when `ecmp`.

    It remembers what it installed, so that when a link between two switches goes
    down (or comes back) `link_changed` recomputes the shortest paths without it and
    returns, per switch, only the entries whose next hops changed: a destination whose
    group lost a port moves to the group (or the single port) of its remaining ones.
    A destination left with no path gets a drop entry, so nothing loops.
    """

    def __init__(self, fabric: Fabric, ecmp: bool):
        self.fabric = fabric
        self.ecmp = ecmp
        self.name = "ecmp" if ecmp else "two-level"
        self.down: frozenset = frozenset()  # links (pairs of switch names) now down
        self.installed: dict[str, dict[str, tuple | None]] = {}  # switch -> host ip -> choice
        self.groups: dict[str, dict[tuple[int, ...], int]] = {}  # switch -> ports -> group id
        self._recompute()

    def _recompute(self) -> None:
        self._dist = {h.switch: self.fabric.hops_to(h.switch, self.down) for h in self.fabric.hosts}

    def next_ports(self, switch: str, host) -> list[int]:
        """Ports of `switch` on a shortest path towards `host`, in port order ([] when
        the links down have cut it off)."""
        if switch == host.switch:
            return [host.port]
        dist = self._dist[host.switch]
        if switch not in dist:
            return []
        return sorted(
            port
            for neighbor, port in self.fabric.switch_neighbors(switch, self.down).items()
            if dist.get(neighbor, 1 << 30) == dist[switch] - 1
        )

    def _choice(self, switch: str, host) -> tuple | None:
        """("port", p) or ("group", ports) for `host` at `switch`; None: no path."""
        ports = self.next_ports(switch, host)
        if not ports:
            return None
        if len(ports) == 1 or not self.ecmp:
            return ("port", ports[host.index % len(ports)])
        return ("group", tuple(ports))

    def messages(self, switch: str) -> list:
        """Flow-mods (and select groups) for every destination host at `switch`."""
        self.installed.pop(switch, None)  # a (re)connecting switch gets everything
        self.groups.pop(switch, None)
        return self._sync(switch)

    def link_changed(self, a: str, b: str, up: bool) -> dict[str, list]:
        """The link between switches `a` and `b` went down (or came back up): the
        messages each switch needs, for the entries that change only."""
        link = frozenset((a, b))
        down = self.down - {link} if up else self.down | {link}
        if down == self.down:
            return {}  # the other end's report of the same change
        self.down = down
        self._recompute()
        changes = {s: self._sync(s) for s in self.fabric.switches}
        return {s: msgs for s, msgs in changes.items() if msgs}

    def _sync(self, switch: str) -> list:
        msgs: list = []
        installed = self.installed.setdefault(switch, {})
        groups = self.groups.setdefault(switch, {})
        for host in self.fabric.hosts:
            choice = self._choice(switch, host)
            if host.ip in installed and installed[host.ip] == choice:
                continue
            if choice is None:
                actions = []  # no path left: drop here rather than bounce
            elif choice[0] == "group":
                if choice[1] not in groups:
                    groups[choice[1]] = len(groups) + 1
                    msgs.append(select_group(groups[choice[1]], list(choice[1])))
                actions = [to_group(groups[choice[1]])]
            else:
                actions = [output(choice[1])]
            # An add with the same match and priority replaces the entry in place.
            msgs.append(flow(ROUTE_TABLE, PREFIX_BASE + 32, ipv4(host.ip), actions))
            installed[host.ip] = choice
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
