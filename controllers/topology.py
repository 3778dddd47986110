"""The controller's read-only view of the topology JSON the harness hands it."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from controllers.contract import SwitchRecord, TopologyDoc


@dataclass(frozen=True)
class Host:
    name: str
    ip: str
    mac: str
    switch: str
    port: int
    index: int  # 0-based position in h1..hN order


@dataclass
class Fabric:
    """Switches, hosts and who-is-on-which-port, indexed for routing."""

    kind: str
    k: int | None  # fat-tree arity
    switches: dict[str, SwitchRecord]
    hosts: list[Host]
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # switch -> neighbor -> port
    tiers: dict[str, dict[int, str]] = field(default_factory=dict)  # switch -> port -> tier

    @classmethod
    def from_json(cls, data: dict | TopologyDoc) -> Fabric:
        """Build from the topology document (`GraphTopo.to_json()` output)."""
        doc = TopologyDoc.from_json(data)
        switches = {s.name: s for s in doc.switches}
        hosts = sorted(
            (Host(h.name, h.ip, h.mac, h.switch, h.port, int(h.name[1:]) - 1) for h in doc.hosts),
            key=lambda h: h.index,
        )
        fabric = cls(doc.kind, doc.k, switches, hosts)
        for link in doc.links:
            for near, near_port, far in (
                (link.a, link.a_port, link.b),
                (link.b, link.b_port, link.a),
            ):
                if near in switches:
                    fabric.ports.setdefault(near, {})[far] = near_port
                    fabric.tiers.setdefault(near, {})[near_port] = link.tier
        return fabric

    @classmethod
    def load(cls, path: str) -> Fabric:
        with open(path) as fh:
            return cls.from_json(json.load(fh))

    def by_dpid(self, dpid: int) -> str | None:
        """Switch name for a datapath id, or None for a switch we do not know."""
        for name, record in self.switches.items():
            if record.dpid == dpid:
                return name
        return None

    def switch_neighbors(self, name: str, down: frozenset = frozenset()) -> dict[str, int]:
        """Neighboring switches of `name` and the local port towards each, leaving out
        the links in `down` (each a frozenset of its two switch names)."""
        return {
            n: p
            for n, p in self.ports.get(name, {}).items()
            if n in self.switches and frozenset((name, n)) not in down
        }

    def neighbor_on(self, switch: str, port: int) -> str | None:
        """The node (switch or host) on the far end of `switch`'s `port`."""
        for neighbor, p in self.ports.get(switch, {}).items():
            if p == port:
                return neighbor
        return None

    def hops_to(self, switch: str, down: frozenset = frozenset()) -> dict[str, int]:
        """Switch-hop distance from every switch to `switch` (BFS) over the links that
        are not `down`; a switch cut off from it is absent."""
        dist = {switch: 0}
        queue = deque([switch])
        while queue:
            here = queue.popleft()
            for there in self.switch_neighbors(here, down):
                if there not in dist:
                    dist[there] = dist[here] + 1
                    queue.append(there)
        return dist
