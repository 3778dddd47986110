"""What the rest of the harness may ask of a network: the `Network` protocol.

Two classes implement it: `EmulatedNetwork` (one machine) and `ClusterNetwork`
(several servers). Jobs, monitors and counters use only these members, so they never
test which one they hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: this module imports nothing at run time
    from mininet.node import Host

    from testbed.network.emulated import LinkEmulation
    from testbed.network.plane import Plane
    from topologies import Direction, GraphTopo


@runtime_checkable
class Network(Protocol):
    """A started network of one run: its hosts, its link emulation, where to read."""

    topo: GraphTopo
    datapath: str
    plane: Plane
    emulation: LinkEmulation
    nft_table: str  # the run's nftables table (where loss.backend is nftables)
    controller_port: int
    profile: dict[str, float]  # seconds per start-up phase, for metadata.json
    teardown_profile: dict[str, float]
    pmd_maxsleep_us: int | None
    spans_servers: bool  # hosts run on other machines too (commands go over ssh)

    def start(self) -> None:
        """Build the network, configure hosts, emulate every link (loss still off)."""

    def stop(self) -> None:
        """Tear down all the network built (safe to call twice)."""

    def enable_loss(self) -> None:
        """Turn on the links' random loss (after the reachability check)."""

    def host(self, name: str) -> Host:
        """The running host `name`."""

    def ns_pid(self, node: str) -> int | None:
        """`node`'s namespace: a host's shell pid, or None (root) for switches."""

    def tree_interface(self, d: Direction) -> str:
        """The interface whose egress queues and shapes direction `d`."""

    def bands_of(self, src: str) -> int:
        """Priority bands of the tc tree on `src`'s egress interfaces."""

    def cluster_report(self) -> dict | None:
        """metadata.json's `cluster` (servers, hosts per server, tunnels); None: one machine."""

    def interface_stats(self) -> dict[str, dict[str, int]] | None:
        """Root-namespace interface counters, all at once; None: read sysfs here."""

    def root_qdiscs(self) -> list[dict] | None:
        """Root-namespace qdisc statistics, all at once; None: list them here."""

    def on_switch(self, switch: str | None, argv: list[str]) -> str:
        """`argv`'s output, run in the root namespace that holds `switch`."""

    def one_switch_per_server(self) -> list[str | None]:
        """A switch on each machine (None: this one), to run a command once each."""
