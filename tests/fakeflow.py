"""A small OpenFlow 1.3 flow-table interpreter for testing controller policies
without a switch (after FAUCET's FakeOFTable).

It understands exactly what the policies emit: flow-mods (add, delete-all) with
IPv4/L4/DSCP/metadata matches, apply-actions (output, set-field, group),
write-metadata and goto-table, and select groups. `FakeFabric.deliveries` follows a
packet from a host through every ECMP alternative and reports where each copy ends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from controllers.compat import ofp, parser


def _ip(value: str) -> int:
    return int(ipaddress.IPv4Address(value))


def field_matches(want, have) -> bool:
    if have is None:
        return False
    if isinstance(want, tuple):  # (value, mask)
        value, mask = want
        if isinstance(value, str):
            return _ip(have) & _ip(mask) == _ip(value) & _ip(mask)
        return have & mask == value & mask
    return have == want


@dataclass
class Entry:
    priority: int
    match: dict
    actions: list
    goto: int | None
    cookie: int = 0
    metadata: tuple[int, int] | None = None  # write-metadata (value, mask)
    packets: int = 0
    bytes: int = 0


@dataclass
class FakeSwitch:
    """Tables and groups of one switch."""

    name: str
    tables: dict[int, list[Entry]] = field(default_factory=dict)
    groups: dict[int, list[list]] = field(default_factory=dict)

    def apply(self, msg) -> None:
        """Install one message as a switch would."""
        if isinstance(msg, parser.OFPFlowMod):
            if msg.command == ofp.OFPFC_DELETE_STRICT:
                match = dict(msg.match.items())
                entries = self.tables.get(msg.table_id, [])
                entries[:] = [
                    e for e in entries if not (e.priority == msg.priority and e.match == match)
                ]
                return
            if msg.command == ofp.OFPFC_DELETE:
                if msg.table_id == ofp.OFPTT_ALL:
                    self.tables.clear()
                else:
                    self.tables.pop(msg.table_id, None)
                return
            actions, goto, metadata = [], None, None
            for ins in msg.instructions:
                if isinstance(ins, parser.OFPInstructionActions):
                    actions += ins.actions
                elif isinstance(ins, parser.OFPInstructionWriteMetadata):
                    metadata = (ins.metadata, ins.metadata_mask)
                elif isinstance(ins, parser.OFPInstructionGotoTable):
                    assert ins.table_id > msg.table_id, "goto must go forward"
                    goto = ins.table_id
            entries = self.tables.setdefault(msg.table_id, [])
            match = dict(msg.match.items())
            same = [e for e in entries if e.priority == msg.priority and e.match == match]
            if msg.command == ofp.OFPFC_MODIFY_STRICT:
                for e in same:  # new instructions, counters and cookie kept
                    e.actions, e.goto, e.metadata = actions, goto, metadata
                return
            entries[:] = [e for e in entries if e not in same]  # ADD replaces, counters reset
            entries.append(Entry(msg.priority, match, actions, goto, msg.cookie, metadata=metadata))
        elif isinstance(msg, parser.OFPGroupMod):
            if msg.command == ofp.OFPGC_DELETE:
                self.groups.clear()
            else:
                assert msg.group_id not in self.groups, f"group {msg.group_id} added twice"
                self.groups[msg.group_id] = [b.actions for b in msg.buckets]

    def lookup(self, table: int, pkt: dict) -> Entry | None:
        """Highest-priority entry of `table` matching `pkt` (ties are a policy bug)."""
        hits = [
            e
            for e in self.tables.get(table, [])
            if all(field_matches(v, pkt.get(k)) for k, v in e.match.items())
        ]
        if not hits:
            return None
        hits.sort(key=lambda e: -e.priority)
        assert (
            len(hits) == 1
            or hits[0].priority != hits[1].priority
            or hits[0].actions == hits[1].actions
        ), f"{self.name}: ambiguous match for {pkt}"
        return hits[0]

    def forward(self, pkt: dict, size: int = 100) -> list[tuple[int, dict]]:
        """(out port, packet) alternatives for `pkt`; [] means dropped."""
        table = 0
        pkt = {"metadata": 0, **pkt}  # the pipeline metadata starts at 0 in every switch
        outs: list[tuple[int, dict]] = []
        while table is not None:
            entry = self.lookup(table, pkt)
            if entry is None:
                return outs
            entry.packets += 1
            entry.bytes += size
            outs += self._actions(entry.actions, pkt)
            if entry.metadata is not None:
                value, mask = entry.metadata
                pkt["metadata"] = (pkt["metadata"] & ~mask) | (value & mask)
            table = entry.goto
        return outs

    def _actions(self, actions, pkt):
        outs = []
        for act in actions:
            if isinstance(act, parser.OFPActionSetField):
                pkt[act.key] = act.value
            elif isinstance(act, parser.OFPActionOutput):
                outs.append((act.port, {k: v for k, v in pkt.items() if k != "metadata"}))
            elif isinstance(act, parser.OFPActionGroup):
                for bucket in self.groups[act.group_id]:  # select: any bucket may be taken
                    outs += self._actions(bucket, dict(pkt))
        return outs


class FakeFabric:
    """Fake switches wired like a topology's JSON, programmed by policies."""

    def __init__(self, topo_json: dict):
        self.switches = {s["name"]: FakeSwitch(s["name"]) for s in topo_json["switches"]}
        self.hosts = {h["name"]: h for h in topo_json["hosts"]}
        self.wire: dict[tuple[str, int], tuple[str, int]] = {}
        for link in topo_json["links"]:
            self.wire[(link["a"], link["a_port"])] = (link["b"], link["b_port"])
            self.wire[(link["b"], link["b_port"])] = (link["a"], link["a_port"])
        self.cut: set[frozenset[str]] = set()  # links pulled: what crosses them is lost

    def pull(self, a: str, b: str, up: bool = False) -> None:
        """Pull (or, `up`, put back) the cable between nodes `a` and `b`."""
        (self.cut.discard if up else self.cut.add)(frozenset((a, b)))

    def program(self, policies) -> None:
        for name, switch in self.switches.items():
            for policy in policies:
                for msg in policy.messages(name):
                    switch.apply(msg)

    def deliveries(
        self, src: str, dst: str, max_hops: int = 16, **fields
    ) -> list[tuple[str, list[str]]]:
        """Where copies of a packet src->dst end up: (endpoint, path of switches).

        Endpoint is a host name, "drop", "loop" (hop limit exceeded) or "dead link"
        (sent over a pulled cable).
        """
        pkt = {
            "eth_type": 0x0800,
            "ipv4_src": self.hosts[src]["ip"],
            "ipv4_dst": self.hosts[dst]["ip"],
            **fields,
        }
        start = self.wire[(src, 0)]
        results = []
        stack = [(start, pkt, [])]
        while stack:
            (node, port), pkt, path = stack.pop()
            if node in self.hosts:
                results.append((node, path))
                continue
            if len(path) >= max_hops:
                results.append(("loop", path))
                continue
            outs = self.switches[node].forward({**pkt, "in_port": port})
            if not outs:
                results.append(("drop", path + [node]))
            for out_port, out_pkt in outs:
                far = self.wire[(node, out_port)]
                if frozenset((node, far[0])) in self.cut:
                    results.append(("dead link", path + [node, far[0]]))
                    continue
                stack.append((far, out_pkt, path + [node]))
        return results
