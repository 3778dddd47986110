"""Random loss with nftables, implemented so every drop is real network loss.

Measured on these machines (design.md §4 and `tests/integration/test_links.py`):

- dropping on a host's own output is reported to its TCP as a local error;
- a switch port's netdev *ingress* hook runs after OVS has read the packet;
- dropping on a switch port's netdev *egress* hook fails OVS's ``sendmmsg`` for that
  packet, and userspace OVS then discards the rest of the batch (~9% extra loss
  per drop at 4,000 packets/s, more at higher rates).

So a lossy direction X->Y does not drop at X. X's egress hook *marks* the packet
lost (ECN = CE, which nothing else here sets; DSCP stays free for priorities) with
the configured probability, and the receiver discards it: a switch by the
controller's top-priority "ip_ecn=3 -> drop" entry, a host by an ingress rule in
its own namespace. The packet occupies the link like a corrupted frame would and
vanishes at the far end; neither sender nor OVS ever sees an error.

Each direction gets an "offered" counter and a "loss" counter (on the marking
rule), tagged with the direction in their comment: measured loss = loss / offered.
Rules are nft JSON (data, not command text), loaded atomically per namespace.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from testbed import shell
from testbed.network.plane import PACKET, Plane
from topologies import Direction, GraphTopo

FAMILY = "netdev"
SCALE = 1_000_000  # numgen draws 0..SCALE-1; loss resolution is 1e-4 %
LOST = "ce"  # the ECN codepoint that means "lost on the previous link"


@dataclass(frozen=True)
class LossCounters:
    """nft counters of one direction."""

    offered: int = 0
    dropped: int = 0


@dataclass
class NamespacePlan:
    """Chains one namespace needs: egress marking per interface, ingress discards."""

    mark: dict[tuple[str, str], list[Direction]] = field(default_factory=dict)  # (hook, dev)
    discard: list[str] = field(default_factory=list)


def threshold(loss_pct: float) -> int:
    """numgen values below this mark the packet lost."""
    return round(loss_pct / 100 * SCALE)


def plan(topo: GraphTopo, plane: Plane = PACKET) -> dict[str | None, NamespacePlan]:
    """Namespace owner (a host name, or None for the root namespace) -> its chains.
    The forwarding plane says where a switch's output can be marked."""
    plans: dict[str | None, NamespacePlan] = defaultdict(NamespacePlan)
    for d in topo.directions():
        if not d.params.loss_pct:
            continue
        owner = d.src if d.src in topo.host_info else None
        plans[owner].mark.setdefault(plane.mark_hook(d, topo.host_info), []).append(d)
        if d.dst in topo.host_info:  # switches discard by an OpenFlow entry instead
            plans[d.dst].discard.append(d.peer_interface)
    return dict(plans)


def ruleset(ns: NamespacePlan, table: str) -> dict:
    """The nft JSON document of one namespace."""
    cmds: list[dict] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for (hook, interface), directions in sorted(ns.mark.items()):
        # before a wired plane's forwarding chain on the same hook (priority 0)
        chain = add_chain(cmds, table, interface, hook, prio=-10)
        for d in directions:
            draw = {
                "match": {
                    "op": "<",
                    "left": {"numgen": {"mode": "random", "mod": SCALE, "offset": 0}},
                    "right": threshold(d.params.loss_pct),
                }
            }
            lost = {
                "mangle": {"key": {"payload": {"protocol": "ip", "field": "ecn"}}, "value": LOST}
            }
            add_rule(cmds, table, chain, f"offered {d.name}", [_IPV4, _COUNTER])
            add_rule(cmds, table, chain, f"loss {d.name}", [_IPV4, draw, _COUNTER, lost])
    for interface in sorted(ns.discard):
        chain = add_chain(cmds, table, interface, "ingress")
        is_lost = {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "ip", "field": "ecn"}},
                "right": LOST,
            }
        }
        add_rule(
            cmds, table, chain, f"discard {interface}", [_IPV4, is_lost, _COUNTER, {"drop": None}]
        )
    return {"nftables": cmds}


_IPV4 = {"match": {"op": "==", "left": {"meta": {"key": "protocol"}}, "right": "ip"}}
_COUNTER = {"counter": {"packets": 0, "bytes": 0}}


def add_chain(
    cmds: list[dict], table: str, interface: str, hook: str, prio: int = 0, name: str = ""
) -> str:
    """Append a base chain on `interface`'s `hook` to `cmds`; return its name."""
    name = (name or f"{hook}_{interface}").replace("-", "_")
    cmds.append(
        {
            "add": {
                "chain": {
                    "family": FAMILY,
                    "table": table,
                    "name": name,
                    "type": "filter",
                    "hook": hook,
                    "dev": interface,
                    "prio": prio,
                    "policy": "accept",
                }
            }
        }
    )
    return name


def add_rule(cmds: list[dict], table: str, chain: str, comment: str, expr: list[dict]) -> None:
    """Append a rule (with a comment naming what it counts) to `cmds`."""
    cmds.append(
        {
            "add": {
                "rule": {
                    "family": FAMILY,
                    "table": table,
                    "chain": chain,
                    "comment": comment,
                    "expr": expr,
                }
            }
        }
    )


def install(ns: NamespacePlan, table: str, ns_pid: int | None) -> None:
    """Load one namespace's rules in one atomic transaction."""
    shell.run(["nft", "-j", "-f", "-"], ns_pid=ns_pid, input_text=json.dumps(ruleset(ns, table)))


def read_counters(table: str, ns_pid: int | None) -> dict[str, LossCounters]:
    """Direction name -> counters of one namespace's table ({} if it has none)."""
    proc = shell.run(["nft", "-j", "list", "table", FAMILY, table], ns_pid=ns_pid, check=False)
    if proc.returncode:
        return {}
    return parse_counters(json.loads(proc.stdout))


def parse_counters(listing: dict) -> dict[str, LossCounters]:
    """Sum ``nft -j list table`` counters by the direction named in each comment."""
    offered: dict[str, int] = defaultdict(int)
    dropped: dict[str, int] = defaultdict(int)
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if not rule or " " not in rule.get("comment", ""):
            continue
        kind, direction = rule["comment"].split(" ", 1)
        packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
        if kind == "offered":
            offered[direction] += packets
        elif kind == "loss":
            dropped[direction] += packets
    return {d: LossCounters(offered[d], dropped[d]) for d in set(offered) | set(dropped)}
