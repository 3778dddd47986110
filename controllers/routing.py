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
    delete_flow,
    flow,
    ipv4,
    output,
    select_group,
    to_group,
)
from controllers.topology import Fabric

# Priorities inside the route table: longer prefixes win, as in a router's FIB.
PREFIX_BASE = 100
# Two-level's failure overrides sit above every prefix, /32s included.
OVERRIDE_PRIORITY = PREFIX_BASE + 33


class TwoLevelRouting:
    """Al-Fares two-level routing for the k-ary fat-tree built by `topologies.fattree`.

    The tables themselves never change. When links go down, `link_changed` walks the
    tables from every switch to every host; where a walk would cross a dead link, that
    switch gets an override entry for that host (one /32 above every prefix) towards a
    neighbor on a shortest path that avoids the links down: the special entries of
    Al-Fares' section 3.8, computed centrally. A switch whose walk is intact keeps its
    tables, and such a walk only visits intact switches, so the overrides cannot loop.
    When the links return, the overrides are deleted and the tables are as they were.
    """

    name = "two-level"

    def __init__(self, fabric: Fabric):
        if fabric.kind != "fat-tree":
            raise ValueError("two-level tables are defined for fat-trees only")
        self.fabric = fabric
        self.k = int(fabric.k)
        self.down: frozenset = frozenset()
        self.overrides: dict[str, dict[str, int | None]] = {}  # switch -> host ip -> port

    def messages(self, switch: str) -> list:
        """The route-table flow-mods `switch` needs (its overrides included)."""
        record = self.fabric.switches[switch]
        role, pod, pos = record.role, record.pod, record.index
        half = self.k // 2
        msgs: list = []
        if role == "core":
            # Core (j, m) reaches pod p on port p+1.
            for p in range(self.k):
                msgs.append(_prefix(f"10.{p}.0.0", 16, p + 1))
            return msgs + self._override_msgs(switch, self.overrides.get(switch, {}))
        if role == "edge":
            for slot in range(half):
                msgs.append(_prefix(f"10.{pod}.{pos}.{slot + 2}", 32, slot + 1))
        else:  # aggregation at position pos is Al-Fares switch s = k/2 + pos
            for edge in range(half):
                msgs.append(_prefix(f"10.{pod}.{edge}.0", 24, edge + 1))
        msgs.append(flow(ROUTE_TABLE, PREFIX_BASE, ipv4(), goto=SUFFIX_TABLE))
        for host_id in range(2, half + 2):
            msgs.append(
                flow(
                    SUFFIX_TABLE,
                    PREFIX_BASE + 8,
                    ipv4(f"0.0.0.{host_id}", "0.0.0.255"),
                    [output(self._uplink(role, pos, host_id))],
                )
            )
        return msgs + self._override_msgs(switch, self.overrides.get(switch, {}))

    def _uplink(self, role: str, pos: int, host_id: int) -> int:
        """The suffix table's uplink for host id `host_id` (Al-Fares' diffusion)."""
        half = self.k // 2
        shift = pos if role == "edge" else half + pos
        return (host_id - 2 + shift) % half + half + 1

    def table_port(self, switch: str, ip: str) -> int:
        """The port the (unchanged) two-level tables of `switch` send `ip` out of."""
        record = self.fabric.switches[switch]
        role, pod, pos = record.role, record.pod, record.index
        _, dst_pod, dst_edge, host_id = map(int, ip.split("."))
        if role == "core":
            return dst_pod + 1
        if role == "edge" and (dst_pod, dst_edge) == (pod, pos):
            return host_id - 1
        if role == "agg" and dst_pod == pod:
            return dst_edge + 1
        return self._uplink(role, pos, host_id)

    def _walk_intact(self, switch: str, host) -> bool:
        """Whether the tables take a packet from `switch` to `host` over live links."""
        node = switch
        while node != host.switch:
            nxt = self.fabric.neighbor_on(node, self.table_port(node, host.ip))
            if frozenset((node, nxt)) in self.down:
                return False
            node = nxt
        return True

    def link_changed(self, a: str, b: str, up: bool) -> dict[str, list]:
        """Links changed: per switch, the override entries to add, change or delete."""
        link = frozenset((a, b))
        down = self.down - {link} if up else self.down | {link}
        if down == self.down:
            return {}  # the other end's report of the same change
        self.down = down
        wanted = self._wanted_overrides()
        changes = {}
        for switch in self.fabric.switches:
            old, new = self.overrides.get(switch, {}), wanted.get(switch, {})
            msgs = [
                delete_flow(ROUTE_TABLE, OVERRIDE_PRIORITY, ipv4(ip))
                for ip in old.keys() - new.keys()
            ]
            msgs += self._override_msgs(
                switch, {ip: p for ip, p in new.items() if old.get(ip, -1) != p}
            )
            if msgs:
                changes[switch] = msgs
        self.overrides = wanted
        return changes

    def _wanted_overrides(self) -> dict[str, dict[str, int | None]]:
        """switch -> host ip -> port (None: no path left) for every broken walk."""
        wanted: dict[str, dict[str, int | None]] = {}
        if not self.down:
            return wanted
        dists = {h.switch: self.fabric.hops_to(h.switch, self.down) for h in self.fabric.hosts}
        for host in self.fabric.hosts:
            dist = dists[host.switch]
            for switch in self.fabric.switches:
                if self._walk_intact(switch, host):
                    continue
                ports = sorted(
                    port
                    for neighbor, port in self.fabric.switch_neighbors(switch, self.down).items()
                    if switch in dist and dist.get(neighbor, 1 << 30) == dist[switch] - 1
                )
                wanted.setdefault(switch, {})[host.ip] = (
                    ports[host.index % len(ports)] if ports else None
                )
        return wanted

    @staticmethod
    def _override_msgs(switch: str, entries: dict[str, int | None]) -> list:
        # A port of None drops: no path is left, and bouncing would loop.
        return [
            flow(ROUTE_TABLE, OVERRIDE_PRIORITY, ipv4(ip), [output(p)] if p else [])
            for ip, p in sorted(entries.items())
        ]


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
