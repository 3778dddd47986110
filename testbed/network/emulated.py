"""Topo -> a running Mininet network with OVS switches, shaped links and tidy hosts.

Mininet builds hosts, veth links and OVS bridges; this module adds what the
testbed needs on top, all recorded in the run's ledger first:

- OpenFlow 1.3, fail-mode secure (no learning-switch flooding in a looped fabric
  before the controller has programmed it), userspace datapath unless the kernel
  module is present;
- static neighbour entries on every host (no ARP broadcasts in the fabric);
- checksum/segmentation offloads off on host interfaces (userspace OVS does not
  fill checksums, and GSO super-packets would make queue lengths meaningless);
- the project's own tc tree on both ends of every link (`testbed.network.tc`).
"""

from __future__ import annotations

import logging
from functools import partial

from mininet.link import Link
from mininet.log import lg as mininet_log
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController

from testbed import shell
from testbed.ledger import BRIDGE_MARK, Ledger, delete_bridges, delete_interfaces
from testbed.network import tc
from topologies import GraphTopo

log = logging.getLogger("testbed.network")


class EmulatedNetwork:
    """A Mininet network for one run. Use `start`, then `stop` (safe to call twice)."""

    def __init__(self, topo: GraphTopo, datapath: str, controller_port: int, ledger: Ledger):
        self.topo = topo
        self.datapath = datapath
        self.controller_port = controller_port
        self.ledger = ledger
        self.net: Mininet | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build and start the network, then configure hosts and shape every link."""
        _route_mininet_logs()
        self.ledger.add_network(sorted(self.topo.switch_info), self.topo.interface_names())
        self.net = Mininet(
            topo=self.topo,
            # batch: one ovs-vsctl transaction for all bridges (80 serial ones take
            # ~15 s on a k=8 fat-tree with the userspace datapath).
            switch=partial(OVSSwitch, datapath=self.datapath, protocols="OpenFlow13",
                           failMode="secure", batch=True),
            controller=partial(RemoteController, ip="127.0.0.1", port=self.controller_port),
            host=Host,
            link=Link,
            autoSetMacs=False,
            autoStaticArp=False,
            build=False,
        )
        self.net.build()
        for host in self.net.hosts:
            self.ledger.add_process(host.pid)
        self.net.start()
        self._mark_bridges()
        for host in self.net.hosts:
            self._configure_host(host)
        self._shape_switch_ports()

    def stop(self) -> None:
        """Remove hosts, bridges and links. Idempotent.

        Not Mininet's `stop`: it deletes links one shell command at a time (~20 s on
        a k=8 fat-tree). Killing the host shells takes their namespaces and the veth
        ends inside them; one ovs-vsctl and one ``ip -batch`` remove the rest.
        """
        net, self.net = self.net, None
        if net is None:
            return
        for node in net.hosts + net.switches:
            node.terminate()
        delete_bridges(sorted(self.topo.switch_info))
        delete_interfaces(self.topo.interface_names())

    # ------------------------------------------------------------------ queries

    def host(self, name: str) -> Host:
        """The running Mininet host `name`."""
        assert self.net is not None, "network not started"
        return self.net.get(name)

    @property
    def hosts(self) -> list[Host]:
        assert self.net is not None, "network not started"
        return list(self.net.hosts)

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
        shell.run(["ethtool", "-K", intf, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                   "gro", "off"], ns_pid=pid)
        shell.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1"], ns_pid=pid)
        neighbours = [
            ["neigh", "replace", info.ip, "lladdr", info.mac, "dev", intf, "nud", "permanent"]
            for name, info in self.topo.host_info.items() if name != host.name
        ]
        shell.run_batch("ip", neighbours, ns_pid=pid)
        link = self._host_link(host.name)
        shell.run_batch("tc", tc.shaping_tree(intf, link.params), ns_pid=pid)

    def _host_link(self, name: str):
        return next(link for link in self.topo.link_info if name in (link.a, link.b))

    def _shape_switch_ports(self) -> None:
        commands = []
        for link in self.topo.link_info:
            for node, port in ((link.a, link.a_port), (link.b, link.b_port)):
                if node in self.topo.switch_info:
                    commands += tc.shaping_tree(f"{node}-eth{port}", link.params)
        shell.run_batch("tc", commands)


def _route_mininet_logs() -> None:
    """Send Mininet's console chatter to the run log instead of the user's terminal."""
    harness = logging.getLogger("testbed")
    mininet_log.handlers = list(harness.handlers)
    mininet_log.propagate = False
    mininet_log.setLevel(logging.INFO)
