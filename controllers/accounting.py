"""Per-job byte counters on every tier: what each job's traffic puts on each link.

Three tables between classification and routing count without changing anything
(every entry only jumps on):

- JOB_TABLE: a packet from one of a job's hosts gets the job's number (index + 1) in
  the pipeline metadata. Hosts belong to one job each, so the source says whose a
  packet is; unmarked traffic (probes, other hosts) keeps metadata 0.
- PORT_TABLE: one entry per (port, job) counts what the job's packets bring in over
  each link; its cookie names the link's tier. Every link whose far end is a switch
  is counted there, after the loss emulation's discard (so a packet lost on a link is
  not counted on it).
- DOWN_TABLE: at a rack switch, one entry per local job host counts the bytes that go
  down to it (the host link's other direction, which no switch receives).

The harness reads the counters when the jobs are over (`testbed.network.counters`)
and sums them per job and tier.
"""

from __future__ import annotations

from controllers.compat import parser
from controllers.contract import JobsDoc
from controllers.cookies import account_cookie
from controllers.ofmsg import DOWN_TABLE, ETH_IPV4, JOB_TABLE, PORT_TABLE, ROUTE_TABLE, flow
from controllers.topology import Fabric

COUNT_PRIORITY = 10


class Accounting:
    """Counting entries for the jobs of the harness's jobs JSON."""

    def __init__(self, fabric: Fabric, config: JobsDoc | dict):
        self.fabric = fabric
        self.jobs = [j.hosts for j in JobsDoc.from_json(config).jobs]
        self.hosts = {h.name: h for h in fabric.hosts}

    def messages(self, switch: str) -> list:
        """The three tables' entries of `switch`, defaults included."""
        msgs = [
            flow(JOB_TABLE, 0, parser.OFPMatch(), goto=PORT_TABLE),
            flow(PORT_TABLE, 0, parser.OFPMatch(), goto=DOWN_TABLE),
            flow(DOWN_TABLE, 0, parser.OFPMatch(), goto=ROUTE_TABLE),
        ]
        for index, hosts in enumerate(self.jobs):
            tag = index + 1
            for name in hosts:
                match = parser.OFPMatch(eth_type=ETH_IPV4, ipv4_src=self.hosts[name].ip)
                msgs.append(flow(JOB_TABLE, COUNT_PRIORITY, match, goto=PORT_TABLE, metadata=tag))
            for port, tier in sorted(self.fabric.tiers.get(switch, {}).items()):
                cookie = account_cookie(tier, index)
                match = parser.OFPMatch(in_port=port, metadata=tag)
                msgs.append(flow(PORT_TABLE, COUNT_PRIORITY, match, goto=DOWN_TABLE, cookie=cookie))
            for name in hosts:
                host = self.hosts[name]
                if host.switch == switch:
                    match = parser.OFPMatch(eth_type=ETH_IPV4, metadata=tag, ipv4_dst=host.ip)
                    cookie = account_cookie("host", index)
                    msgs.append(
                        flow(DOWN_TABLE, COUNT_PRIORITY, match, goto=ROUTE_TABLE, cookie=cookie)
                    )
        return msgs
