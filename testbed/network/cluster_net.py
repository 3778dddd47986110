"""A topology built across servers with Mininet Cluster Edition (`MininetCluster`).

The harness's server is Mininet's ``localhost``; every other server is reached over
ssh as MininetCluster does it (`testbed.network.cluster` checks that first). Nodes
go where `testbed.network.partition` places them, and a link whose ends sit on two
servers becomes a gretap (or ssh) tunnel. The switches take the same settings as
on one machine: OpenFlow 1.3, fail mode secure, and the controller's address on
the private side (`cluster.controller_address`).

Host configuration goes through each node's own shell (local or over ssh), so it is
the same code for every server. Every link direction gets the project's tc tree
(`testbed.network.tc`) at its egress interface, on whichever server holds it: on a
tunnelled link that is the gretap device at each end, so a tunnel is shaped like any
link. Loss is netem's (the stock kernels a cluster runs on have it). Not yet here: the
ledger's record of remote resources; `stop` removes what `start` made on every
server.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from functools import partial
from itertools import groupby
from operator import attrgetter

from mininet.examples.cluster import (
    MininetCluster,
    RemoteGRELink,
    RemoteHost,
    RemoteOVSSwitch,
    RemoteSSHLink,
)

from testbed.errors import TestbedError
from testbed.network import tc
from testbed.network.emulated import NO_IPV6, OFFLOADS_OFF, ListeningController
from testbed.network.partition import PLACERS, PodPlacer
from testbed.spec.schema import ClusterSpec
from topologies import GraphTopo

log = logging.getLogger("testbed.network")
LINKS = {"gre": RemoteGRELink, "ssh": RemoteSSHLink}


class ClusterSwitch(RemoteOVSSwitch):
    """RemoteOVSSwitch whose batch start-up does not go through a node's shell.

    Mininet's runs each server's one long ovs-vsctl line through the first switch's
    interactive shell, whose terminal (a pty, or ssh -tt) cuts input lines at 4,095
    characters: at k=4 a server's line is ~9,000, ovs-vsctl gets half of it, and no
    switch is ever told where the controller is. Here the line goes to ``sh -c``
    locally, or as ssh's remote command, with no terminal in between.
    """

    @classmethod
    def batchStartup(cls, switches, **_kwargs):  # noqa: N802 (Mininet's name)
        key = attrgetter("server")
        for _, group in groupby(sorted(switches, key=key), key):
            group = tuple(group)
            line = " ".join(["ovs-vsctl", *(c.strip() for s in group for c in s.commands)])
            for switch in group:
                switch.commands, switch.batch = [], False
            _run_line(group[0], line)
        return switches


def _run_line(node: RemoteOVSSwitch, line: str) -> None:
    """One shell line (Mininet's own ovs-vsctl syntax, from topology names the spec
    checked) on `node`'s server, in its root namespace."""
    if node.isRemote:
        argv = [a for a in node.sshcmd if a != "-tt"] + [line]
    else:
        argv = ["sh", "-c", line]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise TestbedError(f"ovs-vsctl on {node.server} failed: {''.join(detail)}")


def _tc_batch(node, ns_pid: int | None, cmds: list[list[str]]) -> None:
    """``tc -force -batch -`` on `node`'s server, in the namespace of `ns_pid` (or the
    root one), the lines on stdin."""
    argv = ["mnexec", "-a", str(ns_pid)] if ns_pid else []
    argv += ["tc", "-force", "-batch", "-"]
    if node.isRemote:
        argv = [a for a in node.sshcmd if a != "-tt"] + argv
    lines = "".join(" ".join(str(a) for a in c) + "\n" for c in cmds)
    proc = subprocess.run(argv, input=lines, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise TestbedError(f"tc on {node.server} failed: {''.join(detail)}")


class ClusterNetwork:
    """`topo` over `cluster.servers` (the first is this machine). `start`, then `stop`."""

    def __init__(
        self,
        topo: GraphTopo,
        cluster: ClusterSpec,
        controller_ip: str,
        controller_port: int,
        datapath: str = "user",
    ):
        self.topo = topo
        self.cluster = cluster
        self.controller = partial(ListeningController, ip=controller_ip, port=controller_port)
        self.datapath = datapath
        self.net: MininetCluster | None = None

    @property
    def servers(self) -> list[str]:
        """The servers as MininetCluster names them: this machine is ``localhost``."""
        return ["localhost", *self.cluster.servers[1:]]

    def server_of(self, node: str) -> str:
        """The server that holds `node` (after `start`), by its spec name."""
        server = self.net.get(node).server
        return self.cluster.servers[0] if server == "localhost" else server

    def start(self) -> None:
        """Place, build and start the network; configure every host through its shell."""
        placer = PLACERS[self.cluster.placement]
        if placer is PodPlacer:
            placer = partial(PodPlacer, topo=self.topo)
        self.net = MininetCluster(
            topo=self.topo,
            servers=self.servers,
            placement=placer,
            precheck=False,  # `doctor --cluster` checks; MininetCluster's exits the process
            # controlPath: one ssh connection per server, shared by every node's shell
            # and command there (each new ssh handshake costs seconds under TCG).
            host=partial(RemoteHost, controlPath=True),
            switch=partial(
                ClusterSwitch,
                datapath=self.datapath,
                protocols="OpenFlow13",
                failMode="secure",
                controlPath=True,
            ),
            link=LINKS[self.cluster.tunnel],
            controller=self.controller,
            autoSetMacs=False,
            autoStaticArp=False,
        )
        self.net.start()
        for host in self.net.hosts:
            self._configure_host(host)
        self._emulate_links()

    def stop(self) -> None:
        """Stop every node and link on every server (tunnels included). Idempotent."""
        net, self.net = self.net, None
        if net is not None:
            net.stop()

    def cross_links(self) -> list[tuple[str, str]]:
        """The links that are tunnels (their ends on two servers)."""
        return [
            (link.a, link.b)
            for link in self.topo.link_info
            if self.server_of(link.a) != self.server_of(link.b)
        ]

    def _emulate_links(self) -> None:
        """One ``tc -batch`` per namespace: each host's, and each server's root (its
        switch ports, tunnel ends included)."""
        batches: dict[tuple[str, str | None], list[list[str]]] = {}
        for d in self.topo.directions():
            node = self.net.get(d.src)
            ns = d.src if d.src in self.topo.host_info else None
            cmds = tc.link_tree(d.interface, d.params, netem_loss=True)
            batches.setdefault((node.server, ns), []).extend(cmds)
        for (server, ns), cmds in batches.items():
            node = self.net.get(ns) if ns else self._a_switch_on(server)
            _tc_batch(node, node.pid if ns else None, cmds)

    def _a_switch_on(self, server: str) -> RemoteOVSSwitch:
        return next(s for s in self.net.switches if s.server == server)

    def _configure_host(self, host: RemoteHost) -> None:
        """What `EmulatedNetwork` does per host, through the host's own shell."""
        intf = f"{host.name}-eth0"
        lines = [
            shlex.join(["ethtool", "-K", intf, *OFFLOADS_OFF]),
            shlex.join(["sysctl", "-q", "-w", *NO_IPV6]),
        ]
        for name, info in self.topo.host_info.items():
            if name != host.name:
                lines.append(shlex.join(["ip", "neigh", "replace", info.ip, "lladdr", info.mac,
                                         "dev", intf, "nud", "permanent"]))  # fmt: skip
        out = host.cmd("; ".join(lines))
        if out.strip():
            log.debug("%s: %s", host.name, out.strip())
