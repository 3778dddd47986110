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
link. Loss is netem's (the stock kernels a cluster runs on have it), switched on by
`enable_loss` after the reachability check, as on one machine.

Before anything is built, the ledger records every bridge and switch-port name on
every server (where MininetCluster will put each node is its placer's business), and
after the build each host shell: the local ssh client that holds it and, on a remote
server, the shell itself. A crash on any server is then cleaned by `testbed clean` on
the first (`testbed.ledger.release_on`).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
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
from testbed.ledger import BRIDGE_MARK, LOCAL, Ledger, remote_identities
from testbed.network import tc
from testbed.network.emulated import (
    NO_IPV6,
    OFFLOADS_OFF,
    LinkEmulation,
    ListeningController,
    link_commands,
    route_mininet_logs,
)
from testbed.network.partition import PLACERS, PodPlacer
from testbed.network.plane import Plane
from testbed.network.topo import mininet_topo
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
            _run_on(group[0], ["sh", "-c", line], "ovs-vsctl")
        return switches


def ssh_prefix(node) -> list[str]:
    """The argv prefix that runs a command in `node`'s server's root namespace: its
    shared ssh connection without a terminal, or nothing on this machine."""
    return [a for a in node.sshcmd if a != "-tt"] if node.isRemote else []


def _run_on(node, argv: list[str], what: str, stdin: str = "") -> str:
    """`argv` on `node`'s server (a shell line there if remote: ssh joins its words),
    `stdin` fed to it; raises TestbedError naming `what` and the server on failure."""
    prefix = ssh_prefix(node)
    full = [*prefix, shlex.join(argv)] if prefix else argv
    log.debug("$ %s (on %s)", shlex.join(argv), node.server)
    proc = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise TestbedError(f"{what} on {node.server} failed: {''.join(detail)}")
    return proc.stdout


class ClusterNetwork:
    """`topo` over `cluster.servers` (the first is this machine). `start`, then `stop`.
    Implements `testbed.network.protocol.Network` over ssh to every server."""

    spans_servers = True
    nft_table = ""  # loss is netem's on a cluster: no nftables table

    def __init__(
        self,
        topo: GraphTopo,
        cluster: ClusterSpec,
        controller_ip: str,
        controller_port: int,
        ledger: Ledger,
        datapath: str = "user",
        emulation: LinkEmulation | None = None,
    ):
        self.topo = topo
        self.cluster = cluster
        self.controller_ip, self.controller_port = controller_ip, controller_port
        self.ledger = ledger
        self.datapath = datapath
        self.plane = Plane("kernel" if datapath == "kernel" else "packet")
        self.pmd_maxsleep_us: int | None = None  # no AF_XDP ports on a cluster
        self.teardown_profile: dict[str, float] = {}
        self.emulation = emulation or LinkEmulation(loss_backend="netem")
        if self.emulation.loss_backend != "netem":
            raise TestbedError("a cluster emulates loss with netem only")
        self.net: MininetCluster | None = None
        self.profile: dict[str, float] = {}  # seconds per start-up phase, for metadata.json

    @property
    def servers(self) -> list[str]:
        """The servers as MininetCluster names them: this machine is ``localhost``."""
        return [LOCAL, *self.cluster.servers[1:]]

    def cluster_report(self) -> dict:
        """metadata.json's `cluster`: each server's hosts and the tunnelled links."""
        hosts: dict[str, list[str]] = {server: [] for server in self.cluster.servers}
        for name in self.topo.host_names():
            hosts[self.server_of(name)].append(name)
        return {
            "servers": list(self.cluster.servers),
            "controller_address": self.controller_ip,
            "placement": self.cluster.placement,
            "tunnel": self.cluster.tunnel,
            "hosts": hosts,
            "tunnelled_links": [f"{a}-{b}" for a, b in self.cross_links()],
            "launcher": "exec on each host's server (testbed.jobs.remote)",
        }

    def server_of(self, node: str) -> str:
        """The server that holds `node` (after `start`), by its spec name."""
        server = self.net.get(node).server
        return self.cluster.servers[0] if server == LOCAL else server

    def host(self, name: str) -> RemoteHost:
        """The running host `name` (on whichever server holds it)."""
        assert self.net is not None, "network not started"
        return self.net.get(name)

    def ns_pid(self, node: str) -> int | None:
        """`node`'s namespace on its server: a host's shell, or None (root) for switches."""
        return self.host(node).pid if node in self.topo.host_info else None

    def prefix_of(self, node: str) -> list[str]:
        """How to run a command on `node`'s server (`ssh_prefix`)."""
        return ssh_prefix(self.host(node))

    def tree_interface(self, d) -> str:
        """The interface whose egress queues and shapes direction `d` (its sender's:
        a cluster's switches use AF_PACKET or kernel ports)."""
        return d.interface

    def bands_of(self, src: str) -> int:
        """Priority bands of the tc tree on `src`'s egress interfaces."""
        return 1 if src in self.topo.host_info else self.emulation.bands

    def start(self) -> None:
        """Place, build and start the network; configure every host through its shell."""
        route_mininet_logs()
        started = time.monotonic()
        names = {"bridges": sorted(self.topo.switch_info),
                 "interfaces": self.topo.interface_names()}  # fmt: skip
        for server in self.servers:
            self.ledger.add_on_server(server, **names)
        placer = PLACERS[self.cluster.placement]
        if placer is PodPlacer:
            placer = partial(PodPlacer, topo=self.topo)
        self.net = MininetCluster(
            topo=mininet_topo(self.topo),
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
            controller=partial(
                ListeningController, ip=self.controller_ip, port=self.controller_port
            ),
            autoSetMacs=False,
            autoStaticArp=False,
            build=False,
        )
        self.net.build()
        self._record_shells()
        self._quiet_ports()
        self.net.start()
        self._mark_bridges()
        self.profile["mininet_build_start_s"] = round(time.monotonic() - started, 3)
        for host in self.net.hosts:
            self._configure_host(host)
        self._emulate_links()
        self.profile["configure_s"] = round(time.monotonic() - started, 3)

    def _record_shells(self) -> None:
        """Each host shell into the ledger: its local end (ssh, or the shell itself
        here), and on a remote server the shell there too."""
        for host in self.net.hosts:
            self.ledger.add_process(host.shell.pid)
        for server in self.servers[1:]:
            pids = [h.pid for h in self.net.hosts if h.server == server]
            self.ledger.add_on_server(server, processes=remote_identities(server, pids))

    def _quiet_ports(self) -> None:
        """As on one machine, no IPv6 on switch ports (their router solicitations and
        MLD reports would show in links.csv); and no GRO of the tunnel ends' own. The
        underlay NIC's GRO, which is not ours to change, can still merge the outer GRE
        packets before they reach the tunnel (docs/scale.md)."""
        ports: dict[str, list[str]] = {}
        for link in self.topo.link_info:
            for node, port in ((link.a, link.a_port), (link.b, link.b_port)):
                if node in self.topo.switch_info:
                    ports.setdefault(self.net.get(node).server, []).append(f"{node}-eth{port}")
        tunnel_ends = {
            f"{node}-eth{port}"
            for link in self.topo.link_info
            if self.server_of(link.a) != self.server_of(link.b)
            for node, port in ((link.a, link.a_port), (link.b, link.b_port))
        }
        for server, names in ports.items():
            sysctl = ["sysctl", "-q", "-w", *(f"net.ipv6.conf.{p}.disable_ipv6=1" for p in names)]
            lines = [shlex.join(sysctl)]
            lines += [
                shlex.join(["ethtool", "-K", p, "gro", "off"]) for p in names if p in tunnel_ends
            ]
            _run_on(self._a_switch_on(server), ["sh", "-c", " && ".join(lines)], "sysctl/ethtool")

    def _mark_bridges(self) -> None:
        """Tag every bridge with the run id on its server, so a release deletes ours."""
        key = attrgetter("server")
        for _, group in groupby(sorted(self.net.switches, key=key), key):
            group = list(group)
            argv = ["ovs-vsctl", "--timeout=60"]
            for switch in group:
                argv += ["--", "br-set-external-id", switch.name, BRIDGE_MARK, self.ledger.run_id]
            _run_on(group[0], argv, "ovs-vsctl")

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
        """The tc tree on every egress interface (as `EmulatedNetwork` builds it), loss
        not yet switched on."""
        self._tc_per_namespace(
            lambda i, d: link_commands(self.emulation, self.bands_of, d, d.interface)
        )

    def enable_loss(self) -> None:
        """Start dropping packets at the configured rates (after reachability checks)."""
        self._tc_per_namespace(
            lambda i, d: (
                [tc.switch_loss_on(d.interface, d.params, self.emulation.netem_seed(i))]
                if d.params.loss_pct
                else []
            )
        )

    def _tc_per_namespace(self, commands) -> None:
        """commands(index, direction) for every direction, one ``tc -batch`` per
        namespace: each host's, and each server's root (its switch ports, tunnel ends
        included)."""
        batches: dict[tuple[str, str | None], list[list[str]]] = {}
        for index, d in enumerate(self.topo.directions()):
            ns = d.src if d.src in self.topo.host_info else None
            batches.setdefault((self.net.get(d.src).server, ns), []).extend(commands(index, d))
        for (server, ns), cmds in batches.items():
            if not cmds:
                continue
            node = self.net.get(ns) if ns else self._a_switch_on(server)
            argv = ["mnexec", "-a", str(node.pid)] if ns else []
            lines = "".join(" ".join(str(a) for a in c) + "\n" for c in cmds)
            _run_on(node, [*argv, "tc", "-force", "-batch", "-"], "tc", stdin=lines)

    def interface_stats(self) -> dict[str, dict[str, int]]:
        """Every root-namespace interface on every server -> its tx/rx bytes and
        packets (one read of /proc/net/dev per server: tunnel ends and switch ports)."""
        stats: dict[str, dict[str, int]] = {}
        for server in self.servers:
            out = _run_on(self._a_switch_on(server), ["cat", "/proc/net/dev"], "cat")
            stats.update(parse_net_dev(out))
        return stats

    def root_qdiscs(self) -> list[dict]:
        """``tc -s -j qdisc show`` of every server's root namespace, concatenated."""
        listing: list[dict] = []
        for server in self.servers:
            out = _run_on(self._a_switch_on(server), ["tc", "-s", "-j", "qdisc", "show"], "tc")
            listing += json.loads(out) if out.strip() else []
        return listing

    def on_switch(self, switch: str | None, argv: list[str]) -> str:
        """`argv`'s output, run in the root namespace of `switch`'s server."""
        return _run_on(self.net.get(switch), argv, argv[0])

    def one_switch_per_server(self) -> list[str]:
        """A switch on each server, to run a command once per server."""
        return [self._a_switch_on(server).name for server in self.servers]

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


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev -> interface -> {rx_bytes, rx_packets, tx_bytes, tx_packets}."""
    stats = {}
    for line in text.splitlines()[2:]:
        name, _, fields = line.partition(":")
        values = fields.split()
        if len(values) >= 10:
            stats[name.strip()] = {
                "rx_bytes": int(values[0]),
                "rx_packets": int(values[1]),
                "tx_bytes": int(values[8]),
                "tx_packets": int(values[9]),
            }
    return stats
