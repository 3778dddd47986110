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
COSTS = {
    "shell_mb": 3.9,  # one Mininet host: its bash shell (network_startup, k=16)
    "vswitchd_base_mb": 12.0,  # ovs-vswitchd with no bridge
    "bridge_mb": 0.55,  # ovs-vswitchd per bridge and its ports (network_startup, k=16)
    "process_mb": 8.8,  # one forked training process, USS (scale.py, k=8, 128 processes)
    "forkserver_mb": 210.0,  # once per server that runs training processes (scale.py)
    "controller_mb": 95.0,  # the os-ken controller, k=16 (network_startup)
    "cpu_s_per_gbit": 7.5,  # CPU seconds userspace OVS spends forwarding 1 Gbit, per hop
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
    cores to forward every host at `gbps_per_host` (each packet crosses ~5 switches)."""
    c = COSTS
    head = ["k", "servers", "hosts / server", "switches / server", "memory / server GB",
            f"cores / server at {gbps_per_host:g} Gb/s per host"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in ks:
        hosts, switches = k**3 // 4, 5 * k * k // 4
        for n in [s for s in servers if s <= k]:
            h, s = hosts / n, switches / n
            mb = h * (c["shell_mb"] + c["process_mb"]) + c["forkserver_mb"]
            mb += c["vswitchd_base_mb"] + s * c["bridge_mb"] + c["controller_mb"]
            cores = h * gbps_per_host * 5 * c["cpu_s_per_gbit"]
            cells = [str(k), str(n), f"{h:,.0f}", f"{s:,.0f}", f"{mb / 1024:.1f}", f"{cores:,.0f}"]
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
