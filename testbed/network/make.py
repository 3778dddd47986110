"""The network of a run: on this machine, or over a cluster's servers."""

from __future__ import annotations

from testbed.ledger import Ledger
from testbed.network.emulated import EmulatedNetwork, LinkEmulation
from testbed.network.plane import Plane
from testbed.network.protocol import Network
from testbed.spec.schema import ClusterSpec
from topologies import GraphTopo


def make_network(
    topo: GraphTopo,
    datapath: str,
    ports: str,
    ledger: Ledger,
    emulation: LinkEmulation,
    cluster: ClusterSpec | None = None,
    controller_ip: str = "127.0.0.1",
) -> Network:
    """An unstarted network for `topo`: an `EmulatedNetwork` on switch ports of kind
    `ports`, or with `cluster` a `ClusterNetwork` over its servers (whose switches
    reach the controller at `controller_ip`)."""
    if cluster is None:
        return EmulatedNetwork(topo, datapath, 0, ledger, emulation, Plane(ports))
    from testbed.network.cluster_net import ClusterNetwork  # Mininet's examples

    return ClusterNetwork(topo, cluster, controller_ip, 0, ledger, datapath, emulation)
