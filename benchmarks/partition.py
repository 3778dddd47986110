"""Scale on paper: fat-tree sizes, the cross-server links of each cluster placement,
and what each server needs, printed as the markdown tables of docs/scale.md.

    .venv/bin/python benchmarks/partition.py [--k 4 8 16 32] [--servers 2 4 8 16]

Placements are Mininet Cluster Edition's own placers (SwitchBinPlacer,
RoundRobinPlacer) and ours (PodPlacer, testbed/network/partition.py), each asked for
every node in MininetCluster's order. No root and no network needed.

The sizing multiplies counts by per-node costs measured on this machine (COSTS,
from benchmarks/network_startup.py --k 4 8 16 and benchmarks/scale.py; see
docs/scale.md for the runs).
"""

from __future__ import annotations

import argparse

from testbed.network.partition import cross_links, place
from testbed.spec.schema import FatTreeSpec
from topologies import build_topology

# Resident memory (MB) and CPU, measured here (docs/scale.md says by which run).
# benchmarks/forwarding_cpu.py: ovs-vswitchd spent 3.7 CPU-s per Gbit per hop at
# 96 Mb/s, 2.5 at 192 and 1.0 at 479 (where its one thread was 99% busy): the
# conservative low-rate figure, since emulated links here run at 10-100 Mb/s.
CPU_S_PER_GBIT = 3.7
COSTS = {
    "shell_mb": 3.3,  # one Mininet host's bash shell (network_startup: 3.25-3.29 at k=4-16)
    # ovs-vswitchd: 76.9 MB with the 20 bridges of k=4, 587.1 MB with the 320 of k=16
    "vswitchd_base_mb": 43.0,
    "bridge_mb": 1.7,  # per bridge, with its k ports
    "process_mb": 8.8,  # one forked training process, USS (scale.py, k=8, 128 processes)
    "forkserver_mb": 210.0,  # once per server that runs training processes (scale.py)
    # what a cluster run starts today: a fresh interpreter per process (scale.py, exec)
    "exec_process_mb": 152.0,
    "controller_mb": 60.5,  # the os-ken controller at k=16 (network_startup)
    "cpu_s_per_gbit": CPU_S_PER_GBIT,  # userspace OVS, per switch hop (forwarding_cpu.py)
}


def fat_tree(k: int):
    """k > 16 is beyond what a spec allows on one machine; the Topo is pure data."""
    return build_topology(FatTreeSpec.model_construct(**{**FatTreeSpec().model_dump(), "k": k}))


def partition_table(ks: list[int], servers: list[int]) -> list[str]:
    head = ["k", "hosts", "switches", "links"]
    head += [f"{n} servers: pod / switchbin / roundrobin" for n in servers]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in ks:
        topo = fat_tree(k)
        cells = [str(k), f"{len(topo.host_info):,}", f"{len(topo.switch_info):,}"]
        cells.append(f"{len(topo.link_info):,}")
        for n in servers:
            names = [f"s{i}" for i in range(n)]
            counts = []
            for placement in ("pod", "switchbin", "roundrobin"):
                try:
                    counts.append(f"{cross_links(topo, place(topo, names, placement)):,}")
                except ValueError:  # more servers than pods
                    counts.append("n/a")
            cells.append(" / ".join(counts))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sizing_table(ks: list[int], servers: list[int], gbps_per_host: float) -> list[str]:
    """Per server under `pod`: nodes, memory with one training process per host, and
    the cores to forward every host sending `gbps_per_host` at once (each packet
    crosses ~5 switches)."""
    c = COSTS
    head = ["k", "servers", "hosts / server", "switches / server", "memory / server GB",
            "same, exec'd processes GB",
            f"datapath cores / server at {gbps_per_host * 1000:g} Mb/s per host"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in ks:
        hosts, switches = k**3 // 4, 5 * k * k // 4
        for n in [s for s in servers if s <= k]:
            h, s = hosts / n, switches / n
            network_mb = h * c["shell_mb"] + c["vswitchd_base_mb"] + s * c["bridge_mb"]
            network_mb += c["controller_mb"]
            mb = network_mb + h * c["process_mb"] + c["forkserver_mb"]
            exec_mb = network_mb + h * c["exec_process_mb"]
            cores = h * gbps_per_host * 5 * c["cpu_s_per_gbit"]
            # the userspace datapath forwards on one thread: above 1 core, kernel datapath
            flag = "" if cores <= 1 else " (more than userspace OVS's 1)"
            cells = [str(k), str(n), f"{h:,.0f}", f"{s:,.0f}", f"{mb / 1024:.1f}",
                     f"{exec_mb / 1024:.1f}"]  # fmt: skip
            cells.append(f"{cores:,.1f}{flag}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--servers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--gbps-per-host", type=float, default=0.01)
    args = parser.parse_args()
    print("\n".join(partition_table(args.k, args.servers)))
    print()
    print("\n".join(sizing_table(args.k, args.servers, args.gbps_per_host)))


if __name__ == "__main__":
    main()
