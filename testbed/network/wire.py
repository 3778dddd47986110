"""The wires of a wired forwarding plane: one nftables ``fwd`` per link end.

What arrives at a link end's wire end (sent by that end's node) leaves through the
far end's wire end, so it is queued by that interface's qdisc (the direction's tc
tree) before the far node reads it (see `testbed.network.plane`). The chains live in
the run's own netdev table in the root namespace, at priority 0, after the loss
marks of `testbed.network.loss` (priority -10) on the same hooks.
"""

from __future__ import annotations

import json

from testbed import shell
from testbed.network import loss


def ruleset(wires: list[tuple[str, str]], table: str) -> dict:
    """The nft JSON document forwarding each (from, to) pair of wire ends."""
    cmds: list[dict] = [{"add": {"table": {"family": loss.FAMILY, "name": table}}}]
    for src, dst in wires:
        chain = loss.add_chain(cmds, table, src, "ingress", name="wire_" + src)
        loss.add_rule(cmds, table, chain, f"wire {src}", [{"fwd": {"dev": dst}}])
    return {"nftables": cmds}


def install(wires: list[tuple[str, str]], table: str) -> None:
    """Load every wire in one atomic nft transaction (root namespace)."""
    if wires:
        shell.run(["nft", "-j", "-f", "-"], input_text=json.dumps(ruleset(wires, table)))
