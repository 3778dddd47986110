"""Topo -> a running Mininet network with OVS switches, emulated links and tidy hosts.

Mininet builds hosts and OVS bridges over veths made in batches
(`testbed.network.fabric`); this module adds what the testbed needs on top, all
recorded in the run's ledger first:

- OpenFlow 1.3, fail-mode secure (no learning-switch flooding in a looped fabric
  before the controller has programmed it), userspace datapath unless the kernel
  module is present, switch ports of the run's forwarding plane
  (`testbed.network.plane`: AF_PACKET, or AF_XDP with links on wire ends);
- static neighbour entries on every host (no ARP broadcasts in the fabric);
- checksum/segmentation offloads off on host interfaces (userspace OVS does not
  fill checksums, and GSO super-packets would make queue lengths meaningless);
- on the interface that queues each link direction (its sender's egress, or on the
  AF_XDP plane the far end's wire end for a switch's output), the project's tc tree
  (`testbed.network.tc`): rate, queue, and a netem root when delay/jitter (or netem
  loss) are asked for;
- random loss last, by `enable_loss` (nftables rules of `testbed.network.loss`, or
  the netem roots), so the reachability check sees the fabric itself, not the loss.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import partial

from mininet.log import lg as mininet_log
from mininet.node import Host, RemoteController

from testbed import shell
from testbed.ledger import BRIDGE_MARK, Ledger, delete_bridges, delete_interfaces
from testbed.network import loss, tc, wire
from testbed.network.fabric import FabricHost, FabricMininet, FabricSwitch
from testbed.network.plane import PACKET, PMD_MAXSLEEP_US, Plane
from testbed.spec.schema import DEFAULT_SHAPER_BURST_MS
from topologies import GraphTopo

log = logging.getLogger("testbed.network")

# Userspace OVS does not fill checksums, and GSO super-packets would count as one
# packet in a pfifo of `queue_pkts`: hosts compute and segment everything themselves.
OFFLOADS_OFF = ["tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off"]
NO_IPV6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]


@dataclass(frozen=True)
class LinkEmulation:
    """How link parameters are realised: loss backend, netem seeding, priority bands,
    the shapers' token-bucket depth."""

    loss_backend: str = "nftables"  # netem | nftables
    seed: int | None = None  # base netem seed; None where tc cannot seed netem
    bands: int = 1
    burst_ms: float = DEFAULT_SHAPER_BURST_MS

    def netem_seed(self, index: int) -> int | None:
        """Seed of the netem on the `index`-th link direction (distinct per direction)."""
        return None if self.seed is None else self.seed * 10_000 + index


class ListeningController(RemoteController):
    """Mininet's RemoteController without its ``telnet`` probe of the controller port.

    The harness has already waited for the controller to listen. The probe connects to
    os-ken, which greets it with a binary OFPT_HELLO; when those bytes reach Mininet's
    UTF-8 decoder of the probing shell's output, building the network fails with a
    UnicodeDecodeError (seen in about 1 of 10 runs while the forkserver was loading).
    """

    def checkListening(self) -> None:
        """Nothing to check: `ControllerProcess.start` returns once the port listens."""


class EmulatedNetwork:
    """A Mininet network for one run. Use `start`, then `stop` (safe to call twice).
    Implements `testbed.network.protocol.Network` on this machine alone."""

    spans_servers = False

    def __init__(
        self,
        topo: GraphTopo,
        datapath: str,
        controller_port: int,
        ledger: Ledger,
        emulation: LinkEmulation = LinkEmulation(),
        plane: Plane = PACKET,
    ):
        self.topo = topo
        self.datapath = datapath
        self.plane = plane
        self.controller_port = controller_port
        self.ledger = ledger
        self.emulation = emulation
        self.nft_table = "mlnet_" + re.sub(r"[^a-z0-9_]", "_", ledger.run_id.lower())
        self.net: FabricMininet | None = None
        self.profile: dict[str, float] = {}  # seconds per start-up phase, for metadata.json
        self.teardown_profile: dict[str, float] = {}  # seconds per teardown step
        self.pmd_maxsleep_us: int | None = None  # in force while AF_XDP ports are polled

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build and start the network, then configure hosts and emulate every link."""
        route_mininet_logs()
        clock = _Clock(self.profile)
        self.ledger.add_network(
            sorted(self.topo.switch_info), self.plane.root_interfaces(self.topo)
        )
        self.net = FabricMininet(
            self.topo,
            plane=self.plane,
            # batch: one ovs-vsctl transaction for all bridges (80 serial ones take
            # ~15 s on a k=8 fat-tree with the userspace datapath).
            switch=partial(
                FabricSwitch,
                port_type=self.plane.port_type,
                datapath=self.datapath,
                protocols="OpenFlow13",
                failMode="secure",
                batch=True,
            ),
            controller=partial(ListeningController, ip="127.0.0.1", port=self.controller_port),
            host=FabricHost,
            autoSetMacs=False,
            autoStaticArp=False,
            build=False,
        )
        self.net.build()  # host shells, veth pairs, bridges
        clock.lap("mininet_build_s")
        if self.plane.wired:
            self.ledger.add_nft_table(loss.FAMILY, self.nft_table)
            wire.install(self.plane.wires(self.topo), self.nft_table)
        for host in self.net.hosts:
            self.ledger.add_process(host.pid)
        if self.plane.name == "afxdp":
            self.pmd_maxsleep_us = int(
                self.ledger.set_ovs_option("pmd-maxsleep", str(PMD_MAXSLEEP_US))
            )
        self.net.start()  # one ovs-vsctl for every bridge and port
        self._mark_bridges()
        clock.lap("mininet_start_s")
        for host in self.net.hosts:
            self._configure_host(host)
        clock.lap("configure_hosts_s")
        self._emulate_links()
        clock.lap("tc_trees_s")

    def stop(self) -> None:
        """Remove hosts, bridges, links and loss rules. Idempotent.

        Not Mininet's `stop`: it deletes links one shell command at a time (~20 s on
        a k=8 fat-tree). Killing the host shells takes their namespaces and the veth
        ends inside them; one ovs-vsctl and one ``ip -batch`` remove the rest.
        """
        net, self.net = self.net, None
        if net is None:
            return
        clock = _Clock(self.teardown_profile)
        for node in net.hosts + net.switches:
            node.terminate()
        clock.lap("hosts_s")
        delete_bridges(sorted(self.topo.switch_info))
        clock.lap("bridges_s")
        delete_interfaces(self.plane.root_interfaces(self.topo))
        shell.run(["nft", "delete", "table", loss.FAMILY, self.nft_table], check=False)
        clock.lap("interfaces_s")

    # ------------------------------------------------------------------ queries

    def cluster_report(self) -> None:
        """None: one machine, no cluster section in metadata.json."""
        return None

    def interface_stats(self) -> None:
        """None: the monitor reads each interface's sysfs counters here."""
        return None

    def root_qdiscs(self) -> None:
        """None: the monitor lists the qdiscs here."""
        return None

    def on_switch(self, switch: str | None, argv: list[str]) -> str:
        """`argv`'s output, run here (every switch is in this root namespace)."""
        return shell.run(argv, timeout=30).stdout

    def one_switch_per_server(self) -> list[None]:
        """One machine: run such commands once, here."""
        return [None]

    def host(self, name: str) -> Host:
        """The running Mininet host `name`."""
        assert self.net is not None, "network not started"
        return self.net.get(name)

    def ns_pid(self, node: str) -> int | None:
        """Namespace to run commands for `node` in: a host's, or None (root) for switches."""
        return self.host(node).pid if node in self.topo.host_info else None

    # ------------------------------------------------------------------ helpers

    def _mark_bridges(self) -> None:
        """Tag every bridge with the run id so `testbed clean` knows it is ours."""
        args = ["ovs-vsctl", "--timeout=30"]
        for bridge in sorted(self.topo.switch_info):
            args += ["--", "br-set-external-id", bridge, BRIDGE_MARK, self.ledger.run_id]
        shell.run(args)

    def _configure_host(self, host: Host) -> None:
        intf = f"{host.name}-eth0"
        pid = host.pid
        shell.run(["ethtool", "-K", intf, *OFFLOADS_OFF], ns_pid=pid)
        shell.run(["sysctl", "-q", "-w", *NO_IPV6], ns_pid=pid)
        own = self.topo.host_info[host.name]
        setup = [
            ["addr", "add", f"{own.ip}/{self.topo.prefix_len}", "dev", intf],
            ["link", "set", intf, "up"],
            ["link", "set", "lo", "up"],
        ]
        neighbours = [
            ["neigh", "replace", info.ip, "lladdr", info.mac, "dev", intf, "nud", "permanent"]
            for name, info in self.topo.host_info.items()
            if name != host.name
        ]
        shell.run_batch("ip", setup + neighbours, ns_pid=pid)

    def enable_loss(self) -> None:
        """Start dropping packets at the configured rates (after reachability checks)."""
        if self.emulation.loss_backend == "nftables":
            for owner, ns in loss.plan(self.topo, self.plane).items():
                if owner is None:  # tables in host namespaces vanish with the hosts
                    self.ledger.add_nft_table(loss.FAMILY, self.nft_table)
                loss.install(ns, self.nft_table, self.ns_pid(owner) if owner else None)
            return
        self._tc_per_namespace(
            lambda i, d: (
                [tc.switch_loss_on(self.tree_interface(d), d.params, self.emulation.netem_seed(i))]
                if d.params.loss_pct
                else []
            )
        )

    def _emulate_links(self) -> None:
        """The tc tree on every egress interface, loss not yet switched on. Switch ports
        get one band per priority class; hosts send unmarked traffic, so one band."""
        self._tc_per_namespace(
            lambda i, d: link_commands(self.emulation, self.bands_of, d, self.tree_interface(d))
        )

    def tree_interface(self, d) -> str:
        """The interface whose egress queues and shapes direction `d`."""
        return self.plane.tree_interface(d, self.topo.host_info)

    def bands_of(self, src: str) -> int:
        """Priority bands of the tc tree on `src`'s egress interfaces."""
        return 1 if src in self.topo.host_info else self.emulation.bands

    def _tc_per_namespace(self, commands) -> None:
        """Run commands(index, direction) for every direction, one tc batch per namespace."""
        batches: dict[int | None, list[list[str]]] = {}
        for index, d in enumerate(self.topo.directions()):
            batches.setdefault(self.ns_pid(d.src), []).extend(commands(index, d))
        for pid, cmds in batches.items():
            shell.run_batch("tc", cmds, ns_pid=pid)


def link_commands(emulation: LinkEmulation, bands_of, d, interface: str) -> list[list[str]]:
    """The tc commands of direction `d`'s tree on `interface` (loss not yet on), with
    one band per priority class (`bands_of(src)`) and their DSCP filters."""
    bands = bands_of(d.src)
    cmds = tc.link_tree(
        interface,
        d.params,
        emulation.loss_backend == "netem",
        bands=bands,
        loss_on=False,
        burst_ms=emulation.burst_ms,
    )
    return cmds + (tc.dscp_filters(interface, bands) if bands > 1 else [])


class _Clock:
    """Laps of the network's start-up, written into `profile` as they complete."""

    def __init__(self, profile: dict[str, float]):
        self.profile, self.last = profile, time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.profile[name] = round(now - self.last, 3)
        self.last = now


def route_mininet_logs() -> None:
    """Send Mininet's console chatter to the run log instead of the user's terminal."""
    harness = logging.getLogger("testbed")
    mininet_log.handlers = list(harness.handlers)
    mininet_log.propagate = False
    mininet_log.setLevel(logging.INFO)
