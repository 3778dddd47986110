"""Builders for the few OpenFlow 1.3 messages the policies emit.

Messages are built with ``datapath=None`` (FAUCET's pattern); the app attaches the
datapath just before sending, so policies stay testable without a switch.
"""

from __future__ import annotations

from controllers.compat import ofp, parser

# Pipeline: table 0 classifies (priority marks); tables 1-3 count each job's bytes per
# tier (controllers.accounting); table 4 routes, table 5 holds the two-level suffix
# entries that table 4 defers to.
CLASSIFY_TABLE = 0
JOB_TABLE = 1
PORT_TABLE = 2
DOWN_TABLE = 3
ROUTE_TABLE = 4
SUFFIX_TABLE = 5
AFTER_CLASSIFY = JOB_TABLE

ETH_IPV4 = 0x0800
# The link emulation marks a packet "lost on the previous link" with ECN CE (see
# testbed.network.loss); every switch discards such packets before anything else.
LOST_ECN = 3


def flow(
    table: int,
    priority: int,
    match,
    actions=(),
    goto: int | None = None,
    cookie: int = 0,
    metadata: int | None = None,
):
    """An add flow-mod applying `actions`, optionally writing the pipeline `metadata`,
    then optionally jumping to table `goto`."""
    instructions = []
    if actions:
        instructions.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions)))
    if metadata is not None:
        instructions.append(parser.OFPInstructionWriteMetadata(metadata, 0xFFFF))
    if goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(goto))
    return parser.OFPFlowMod(
        None,
        cookie=cookie,
        table_id=table,
        priority=priority,
        match=match,
        instructions=instructions,
    )


def delete_flow(table: int, priority: int, match):
    """A strict delete: the one entry of `table` with exactly this match and priority."""
    return parser.OFPFlowMod(
        None,
        table_id=table,
        command=ofp.OFPFC_DELETE_STRICT,
        priority=priority,
        match=match,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
    )


def ipv4(dst: str | None = None, mask: str | None = None, **fields):
    """Match IPv4 packets, optionally on a (masked) destination address."""
    if dst is not None:
        fields["ipv4_dst"] = (dst, mask) if mask else dst
    return parser.OFPMatch(eth_type=ETH_IPV4, **fields)


def output(port: int):
    """Send out of `port`."""
    return parser.OFPActionOutput(port)


def to_group(group_id: int):
    """Hand the packet to group `group_id`."""
    return parser.OFPActionGroup(group_id)


def select_group(group_id: int, ports: list[int]):
    """An ECMP select group hashing flows over `ports` (equal weights)."""
    buckets = [
        parser.OFPBucket(
            weight=1, watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY, actions=[output(port)]
        )
        for port in ports
    ]
    return parser.OFPGroupMod(None, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, group_id, buckets)


def discard_lost():
    """Top-priority entry dropping packets marked lost by the link emulation."""
    return flow(CLASSIFY_TABLE, 0xFFFF, parser.OFPMatch(eth_type=ETH_IPV4, ip_ecn=LOST_ECN))


def clear_switch():
    """Delete every flow and group, so a reconnecting switch starts from a clean slate."""
    return [
        parser.OFPFlowMod(
            None,
            table_id=ofp.OFPTT_ALL,
            command=ofp.OFPFC_DELETE,
            out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY,
        ),
        parser.OFPGroupMod(None, ofp.OFPGC_DELETE, 0, ofp.OFPG_ALL, []),
    ]
