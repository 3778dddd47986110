"""Flow prioritization policies (MLNET traffic management): own the classify table.

A policy returns the table-0 flow-mods of a switch: entries that mark a job's flows
with a DSCP value, and the catch-all that hands every packet on to routing.
"""

from __future__ import annotations

from controllers.compat import parser
from controllers.ofmsg import CLASSIFY_TABLE, ROUTE_TABLE, flow
from controllers.topology import Fabric


class NoPriority:
    """`controller.priority: none`: every flow is best effort."""

    name = "none"

    def __init__(self, fabric: Fabric):
        self.fabric = fabric

    def messages(self, switch: str) -> list:
        """Only the catch-all into the route table."""
        return [flow(CLASSIFY_TABLE, 0, parser.OFPMatch(), goto=ROUTE_TABLE)]


def make_priority(fabric: Fabric, name: str):
    """The prioritization policy `name` (spec `controller.priority`) for `fabric`."""
    if name == "none":
        return NoPriority(fabric)
    raise ValueError(f"unknown priority policy {name!r}; expected none")
