"""Forwarding planes: how the userspace Open vSwitch reads and writes switch ports.

- ``packet``: each switch port is a veth end OVS reads through an AF_PACKET socket
  (an OVS ``system`` port). Every link is one veth pair; a direction's tc tree
  (rate, queue, priority bands) sits on the sending end, where OVS transmits
  through the kernel's qdisc layer.
- ``afxdp``: each switch port is an AF_XDP socket (OVS ``afxdp``), polled by one
  PMD thread instead of ovs-vswitchd's main loop, which costs far less per poll.
  AF_XDP transmit skips the qdisc layer, so the link cannot be shaped on the port
  itself. Every link end X instead gets its
  own veth pair X <-> `wire_end(X)`, and the two wire ends of a link are joined by
  an nftables ``fwd`` in the root namespace: a packet leaving X arrives at X's
  wire end, is forwarded into the queue of the far end's wire end, and only then
  enters the far node. The direction's tc tree sits on that far wire end, so the
  kernel queues and shapes it exactly as on the packet plane. Loss marks go in the
  same ingress hook, just before the ``fwd``.
- ``kernel``: the OVS kernel datapath (ports are kernel vports; one veth per link,
  trees on the sending end as on the packet plane).

Why ``afxdp`` ports (polled by a PMD thread) and not ``afxdp-nonpmd`` (polled by
ovs-vswitchd's main loop): on the quickstart here the main loop still took 84% of a
core (92% with AF_PACKET ports) and the job iterated in 16.6 ms (19.1 ms); the PMD
thread took 56-59% and the job iterated in 9.2 ms. A PMD thread spins its core
unless ``pmd-maxsleep`` lets it sleep, a setting of the machine's whole Open vSwitch:
a run sets it only where nobody has, and removes it at teardown (`Ledger`).
Measured figures: docs/scale.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from topologies import Direction, GraphTopo

PORT_TYPES = {"packet": "system", "afxdp": "afxdp", "kernel": "system"}
# How long the PMD thread that polls AF_XDP ports may sleep when it finds little to
# read (Open vSwitch's other_config:pmd-maxsleep, µs): without it the thread spins a
# whole core even on an idle fabric; it is also the most a hop waits for the thread.
PMD_MAXSLEEP_US = 100


def wire_end(interface: str) -> str:
    """The root-namespace veth end that carries `interface`'s traffic on a wired plane
    (``e1_1-eth3`` -> ``e1_1-w3``: short enough for the kernel's 15-character names)."""
    node, port = interface.rsplit("-eth", 1)
    return f"{node}-w{port}"


@dataclass(frozen=True)
class Plane:
    """One forwarding plane (see the module docstring)."""

    name: str = "packet"  # packet | afxdp | kernel

    @property
    def port_type(self) -> str:
        """The OVS interface type of every switch port."""
        return PORT_TYPES[self.name]

    @property
    def wired(self) -> bool:
        """Whether links run through wire ends (trees and loss marks on them)."""
        return self.name == "afxdp"

    def tree_interface(self, d: Direction, hosts) -> str:
        """Where direction `d`'s tc tree lives. A host sends through the kernel on
        every plane; a switch's output is queued at the far end's wire end when wired."""
        if self.wired and d.src not in hosts:
            return wire_end(d.peer_interface)
        return d.interface

    def mark_hook(self, d: Direction, hosts) -> tuple[str, str]:
        """(hook, interface) where `d`'s packets are marked lost: the sender's egress,
        or, for a switch on a wired plane, the ingress of its port's wire end."""
        if self.wired and d.src not in hosts:
            return "ingress", wire_end(d.interface)
        return "egress", d.interface

    def veth_pairs(self, topo: GraphTopo) -> list[tuple[str, str]]:
        """(first, second) ends of every veth pair the plane needs; the second may
        belong to a host (it is then created in the host's namespace)."""
        pairs = []
        for link in topo.link_info:
            a, b = link.directions()[0].interface, link.directions()[0].peer_interface
            if self.wired:
                pairs += [(wire_end(a), a), (wire_end(b), b)]
            elif a.split("-eth")[0] in topo.host_info:
                pairs.append((b, a))  # the switch end stays in the root namespace
            else:
                pairs.append((a, b))
        return pairs

    def root_interfaces(self, topo: GraphTopo) -> list[str]:
        """Every interface the plane makes in the root namespace (for the ledger)."""
        ends = [end for pair in self.veth_pairs(topo) for end in pair]
        return [i for i in ends if i.split("-eth")[0] not in topo.host_info]

    def wires(self, topo: GraphTopo) -> list[tuple[str, str]]:
        """(from, to) wire ends: what arrives at `from` is forwarded out of `to`."""
        if not self.wired:
            return []
        out = []
        for link in topo.link_info:
            a, b = link.directions()[0].interface, link.directions()[0].peer_interface
            out += [(wire_end(a), wire_end(b)), (wire_end(b), wire_end(a))]
        return out


PACKET = Plane("packet")  # the default: AF_PACKET ports, one veth per link
