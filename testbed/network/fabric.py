"""Mininet's objects over interfaces made in batches.

Mininet makes each link with its own ``ip link add`` and sets each interface's MAC
and state with three ``ifconfig`` runs in the owning node's shell, and each host's
address with more: at k=16 (6,144 interfaces) that is most of a minute. Here the
network makes every veth pair in one ``ip -batch`` per namespace kind (host ends
are created straight inside their host's namespace, with their MAC), and Mininet
only wraps the existing interfaces in its `Link`/`Intf` objects, so users' code
keeps Mininet's API (``net.get("h1").IP()``, ``host.cmd``, ``host.popen``).
Addresses, neighbours and state of host interfaces are set by one ``ip -batch``
per host (`EmulatedNetwork._configure_host`).
"""

from __future__ import annotations

from mininet.link import Link
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch
from mininet.topo import Topo

from testbed import shell
from testbed.network.plane import Plane
from testbed.network.topo import mininet_topo
from topologies import GraphTopo


class PrebuiltLink(Link):
    """A Mininet link over a veth pair that already exists (see `make_veths`)."""

    @classmethod
    def makeIntfPair(cls, *args, **kwargs):  # noqa: N802 (Mininet's name)
        """Nothing to make: `make_veths` created the pair."""
        return None


class FabricHost(Host):
    """A Mininet host whose interface the network configures in one batch."""

    def configDefault(self, **_params):  # noqa: N802 (Mininet's name)
        """Record the address Mininet would set (the network's batch sets it)."""
        intf = self.defaultIntf()
        ip, _, prefix = self.params["ip"].partition("/")
        intf.ip, intf.prefixLen, intf.mac = ip, int(prefix), self.params["mac"]


class FabricSwitch(OVSSwitch):
    """An OVS switch whose ports are of the forwarding plane's type."""

    def __init__(self, name: str, port_type: str = "system", **params):
        self.port_type = port_type
        super().__init__(name, **params)

    def intfOpts(self, intf) -> str:  # noqa: N802 (Mininet's name)
        """Mininet's options (the port number) plus the port's type. AF_XDP ports
        use veth's native XDP: the default (best-effort) first tries zero-copy, which
        veth lacks, and so took 110 ms per port here against 63 ms."""
        opts = super().intfOpts(intf)
        if self.port_type == "afxdp":
            opts += " type=afxdp options:xdp-mode=native"
        return opts


class FabricMininet(Mininet):
    """Mininet that makes the topology's veths in batches before wrapping them."""

    def __init__(self, graph: GraphTopo, *args, plane: Plane, **kwargs):
        self.graph, self.plane = graph, plane
        super().__init__(*args, topo=mininet_topo(graph), **kwargs)

    def buildFromTopo(self, topo: Topo = None) -> None:  # noqa: N802 (Mininet's name)
        """Mininet's order (controller, hosts, switches, links) with the veths made
        in batches between switches and links."""
        if not self.controllers and self.controller:
            self.addController("c0", self.controller)
        for name in topo.hosts():
            self.addHost(name, **topo.nodeInfo(name))
        for name in topo.switches():
            self.addSwitch(name, **topo.nodeInfo(name))
        make_veths(self.plane, self.graph, {h.name: h.pid for h in self.hosts})
        for _src, _dst, params in topo.links(sort=True, withInfo=True):
            # addr None: no random MACs set one ifconfig at a time
            self.addLink(cls=PrebuiltLink, addr1=None, addr2=None, up=None, **params)


def make_veths(plane: Plane, topo: GraphTopo, pids: dict[str, int]) -> None:
    """Every veth pair of `plane`, then every root-namespace end up, IPv6 off first
    (its router solicitations would show up in the link counters)."""
    adds, root = [], []
    for first, second in plane.veth_pairs(topo):
        peer = ["peer", "name", second]
        host = second.split("-eth")[0]
        if host in pids:
            peer += ["address", topo.host_info[host].mac, "netns", str(pids[host])]
        else:
            root.append(second)
        adds.append(["link", "add", "name", first, "type", "veth", *peer])
        root.append(first)
    shell.run_batch("ip", adds)
    shell.run(["sysctl", "-q", "-w", *(f"net.ipv6.conf.{i}.disable_ipv6=1" for i in root)])
    shell.run_batch("ip", [["link", "set", i, "up"] for i in root])
