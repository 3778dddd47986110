"""Shared vocabulary of every topology: a graph of named hosts, switches and links,
with typed records of what the rest of the testbed needs to know about each.

A topology is pure data (Mininet's split): building one touches nothing on the
system and imports neither Mininet nor the spec. `testbed.network.topo` turns it into
a Mininet `Topo`; the controller receives `document()` (controllers.contract).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

from controllers.contract import HostRecord, LinkRecord, SwitchRecord, TopologyDoc


class LinkParams(Protocol):
    """Emulation parameters of one direction of a link (the spec's `LinkParams`)."""

    bw_mbps: float
    delay_ms: float
    jitter_ms: float
    loss_pct: float
    queue_pkts: int


class Shape(Protocol):
    """What a topology is built from: its sizes (read by each kind) and the link
    parameters of every direction (the spec's `topology` section has both)."""

    kind: str

    def params_for(self, tier: str, src: str = "", dst: str = "") -> LinkParams: ...


@dataclass(frozen=True)
class HostInfo:
    """One emulated host. `rack` is its edge/leaf switch; `pod` groups racks."""

    name: str
    ip: str
    mac: str
    switch: str
    port: int  # switch port the host hangs off
    rack: int
    pod: int


@dataclass(frozen=True)
class SwitchInfo:
    """One OpenFlow switch. `pod`/`index` locate it inside its tier."""

    name: str
    dpid: int
    role: str  # edge | agg | core | leaf | spine
    pod: int
    index: int


@dataclass(frozen=True)
class LinkInfo:
    """One bidirectional link, with the port numbers at both ends and the emulation
    parameters of each direction (`ab`: a's egress towards b)."""

    a: str
    a_port: int
    b: str
    b_port: int
    tier: str
    ab: LinkParams
    ba: LinkParams

    @property
    def name(self) -> str:
        return f"{self.a}--{self.b}"

    def directions(self) -> tuple[Direction, Direction]:
        return (
            Direction(self, self.a, self.a_port, self.b, self.b_port, self.ab),
            Direction(self, self.b, self.b_port, self.a, self.a_port, self.ba),
        )


@dataclass(frozen=True)
class Direction:
    """One direction of a link: what leaves `src` on `src_port` towards `dst`."""

    link: LinkInfo
    src: str
    src_port: int
    dst: str
    dst_port: int
    params: LinkParams

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"

    @property
    def interface(self) -> str:
        """The egress interface (Mininet names it node-ethN)."""
        return f"{self.src}-eth{self.src_port}"

    @property
    def peer_interface(self) -> str:
        return f"{self.dst}-eth{self.dst_port}"


# Switch dpids carry the role in their top byte so they are unique across kinds.
ROLE_CODE = {"edge": 1, "agg": 2, "core": 3, "leaf": 4, "spine": 5, "dumbbell": 6}


def make_dpid(role: str, group: int, index: int) -> int:
    """Deterministic datapath id: role code, group (pod), index within the group."""
    return (ROLE_CODE[role] << 16) | (group << 8) | index


def mac_for(ip: str) -> str:
    """Locally administered MAC derived from the host IP (10.a.b.c -> 02:00:0a:aa:bb:cc)."""
    octets = [int(part) for part in ip.split(".")]
    return "02:00:" + ":".join(f"{octet:02x}" for octet in octets)


class GraphTopo:
    """Typed node/link records of one topology. Subclasses implement `build`."""

    kind = "graph"
    prefix_len = 8  # every host address lives in 10.0.0.0/8 and is on-link

    def __init__(self, spec: Shape):
        self.spec = spec
        self.host_info: dict[str, HostInfo] = {}
        self.switch_info: dict[str, SwitchInfo] = {}
        self.link_info: list[LinkInfo] = []
        self.build()

    def build(self) -> None:
        """Add every switch, host and link (each kind's own layout)."""
        raise NotImplementedError

    def arity(self) -> int | None:
        """The fat-tree's k (two-level routing needs it); None for other kinds."""
        return None

    def add_host(self, info: HostInfo) -> None:
        """Register a host."""
        self.host_info[info.name] = info

    def add_switch(self, info: SwitchInfo) -> None:
        """Register a switch with its deterministic dpid."""
        self.switch_info[info.name] = info

    def add_link(self, a: str, a_port: int, b: str, b_port: int, tier: str) -> None:
        """Connect two nodes on fixed ports; the tier picks the link parameters."""
        info = LinkInfo(
            a,
            a_port,
            b,
            b_port,
            tier,
            self.spec.params_for(tier, a, b),
            self.spec.params_for(tier, b, a),
        )
        self.link_info.append(info)

    # ---------------------------------------------------------------- queries

    def host_names(self) -> list[str]:
        """Hosts in h1..hN order (pod/rack order)."""
        return sorted(self.host_info, key=lambda name: int(name[1:]))

    def racks(self) -> dict[int, list[str]]:
        """Hosts grouped by rack (edge or leaf switch), in host order."""
        groups: dict[int, list[str]] = {}
        for name in self.host_names():
            groups.setdefault(self.host_info[name].rack, []).append(name)
        return groups

    def directions(self) -> list[Direction]:
        """Both directions of every link, in link order."""
        return [d for link in self.link_info for d in link.directions()]

    def interface_names(self) -> list[str]:
        """Root-namespace interface names the network will create (switch ports)."""
        names = []
        for link in self.link_info:
            for node, port in ((link.a, link.a_port), (link.b, link.b_port)):
                if node in self.switch_info:
                    names.append(f"{node}-eth{port}")
        return names

    def document(self) -> TopologyDoc:
        """Everything the controller needs (the contract's topology document)."""
        return TopologyDoc(
            kind=self.kind,
            k=self.arity(),
            switches=tuple(SwitchRecord(**asdict(s)) for s in self.switch_info.values()),
            hosts=tuple(HostRecord(**asdict(h)) for h in self.host_info.values()),
            links=tuple(
                LinkRecord(a=x.a, a_port=x.a_port, b=x.b, b_port=x.b_port, tier=x.tier)
                for x in self.link_info
            ),
        )

    def to_json(self) -> dict:
        """`document()` as JSON-ready data."""
        return self.document().to_json()
