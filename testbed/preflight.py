"""Checks that must pass before a run creates anything (privileges, daemons, free
names, platform features the spec asks for)."""

from __future__ import annotations

from pathlib import Path

from testbed import shell
from testbed.errors import SpecError, TestbedError
from testbed.platform import Platform
from testbed.spec.schema import Experiment
from topologies import GraphTopo

TOOLS = ("mnexec", "ovs-vsctl", "tc", "ip", "ethtool", "sysctl", "fping", "nft")


def check(exp: Experiment, source: str, topo: GraphTopo, platform: Platform) -> None:
    """Raise the first problem found, as a one-line error."""
    if not platform.root:
        raise TestbedError(
            "testbed run needs root (it creates namespaces and OVS bridges); run it with sudo"
        )
    missing = [tool for tool in TOOLS if not shell.have(tool)]
    if missing:
        raise TestbedError(f"missing tools: {', '.join(missing)}; run `sudo make bootstrap`")
    if not platform.ovs_running:
        raise TestbedError("Open vSwitch is not running; `sudo make bootstrap` starts it")
    check_features(exp, source, platform)
    check_free_names(topo)
    if exp.cluster is not None and not platform.netem:
        raise TestbedError(
            "a cluster run emulates links with netem on every server, and sch_netem is "
            "not available here (`modprobe sch_netem`)"
        )


def check_features(exp: Experiment, source: str, platform: Platform) -> None:
    """Spec keys that ask for something this machine lacks."""
    if platform.datapath(exp.network.datapath) == "user" and not platform.tun:
        # Without it OVS fails to create the bridges and only says so in its own log.
        raise TestbedError(
            "the userspace OVS datapath needs /dev/net/tun, which is missing "
            "(`modprobe tun` creates it)"
        )
    if exp.network.datapath == "kernel" and not platform.ovs_kernel_module:
        raise SpecError(
            source,
            "network.datapath",
            "kernel",
            "expected auto or user: the openvswitch kernel module is not available",
        )
    if (
        exp.network.ports == "afxdp"
        and platform.datapath(exp.network.datapath) == "user"
        and "afxdp" not in platform.ovs_port_types
    ):
        raise SpecError(
            source,
            "network.ports",
            "afxdp",
            "expected auto or packet: this Open vSwitch offers no afxdp ports",
        )
    _check_link_features(exp, source, platform)
    for i, job in enumerate(exp.jobs):
        cc = job.transport.congestion_control
        if cc not in platform.tcp_congestion_controls:
            raise SpecError(
                source,
                f"jobs.{i}.transport.congestion_control",
                cc,
                f"expected one this kernel offers: {', '.join(platform.tcp_congestion_controls)}",
            )


NETEM_HINT = (
    "sch_netem is not available on this machine (on Ubuntu: "
    "apt install linux-modules-extra-$(uname -r))"
)


def _check_link_features(exp: Experiment, source: str, platform: Platform) -> None:
    backend, _ = platform.loss_backend(exp.network.loss_backend)
    if backend == "netem" and not platform.netem:
        raise SpecError(
            source,
            "network.loss_backend",
            exp.network.loss_backend,
            f"expected auto or nftables: {NETEM_HINT}",
        )
    sections = exp.topology.link_sections()
    lossy = [path for path, p in sections.items() if p.loss_pct]
    if backend == "nftables" and lossy and not platform.nftables_egress:
        raise SpecError(
            source,
            f"{lossy[0]}.loss_pct",
            sections[lossy[0]].loss_pct,
            "expected 0: nftables with netdev egress hooks is not available here",
        )
    if not platform.netem:
        for path, params in sections.items():
            for key in ("delay_ms", "jitter_ms"):
                if getattr(params, key):
                    raise SpecError(
                        source,
                        f"{path}.{key}",
                        getattr(params, key),
                        f"expected 0: delay and jitter need netem, and {NETEM_HINT}",
                    )


def check_free_names(topo: GraphTopo) -> None:
    """Refuse to reuse bridge or interface names that exist: they are not ours to touch."""
    bridges = set(shell.run(["ovs-vsctl", "--timeout=10", "list-br"]).stdout.split())
    clash = sorted(bridges & set(topo.switch_info))
    clash += [i for i in topo.interface_names() if Path("/sys/class/net", i).exists()]
    if clash:
        raise TestbedError(
            f"{len(clash)} bridge/interface names this run needs already exist "
            f"({', '.join(clash[:4])}...): another run is active, or a crashed run left them "
            "(`testbed clean` removes leftovers of ours)"
        )
