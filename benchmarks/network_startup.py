"""How a fat-tree comes up and goes down: controller start -> all switches programmed
-> reachability checked -> torn down, and what it holds in memory, for k = 4, 8, 16.

    sudo .venv/bin/python benchmarks/network_startup.py [--k 4 8 16] [--ports auto]

Each k is one network with no job (`bare_testbed`), on the forwarding plane `--ports`
(auto: AF_XDP where its pinned memory fits, so k=4 here, else AF_PACKET). Printed
per k: seconds to "network ready" and to "reachable" (since run start), teardown
seconds, the start-up profile (metadata's network_profile: Mininet build, start, host
setup, tc trees),
the resident memory of the host shells, ovs-vswitchd and the controller, and the
ratios between the largest and smallest k from this one invocation (the machine is
shared and noisy: compare ratios, not absolute numbers across days).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from testbed import shell
from testbed.ledger import leftovers
from testbed.runner import bare_testbed

COLUMNS = [
    "k", "ports", "hosts", "switches", "ready s", "reachable s", "pairs checked", "teardown s",
    "build s", "start s", "hosts setup s", "tc s", "shell MB/host", "ovs-vswitchd MB",
    "controller MB", "left behind",
]  # fmt: skip


def rss_mb(pids: list[int]) -> float:
    """Resident memory of `pids`, summed, in MB (VmRSS of /proc/<pid>/status)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure(k: int, workdir: Path, ports: str) -> dict:
    spec = {
        "name": f"startup-k{k}",
        "topology": {"kind": "fat-tree", "k": k},
        "network": {"ports": ports},
        "jobs": [{"name": "probe", "workers": 1, "servers": 1, "iterations": 1}],
    }
    tb = bare_testbed(spec, workdir / f"k{k}", "benchmark")
    with tb:
        hosts = [h.pid for h in tb.network.net.hosts]
        vswitchd = shell.run(["pidof", "ovs-vswitchd"], check=False).stdout.split()
        row = {
            "k": k,
            "ports": tb.ports,
            "hosts": len(hosts),
            "switches": len(tb.topo.switch_info),
            "ready s": tb.timings["network_ready_s"],
            "reachable s": tb.timings["reachable_s"],
            "pairs checked": f"{tb.reachability['pairs']:,} of {tb.reachability['all_pairs']:,}",
            "build s": tb.network.profile["mininet_build_s"],
            "start s": tb.network.profile["mininet_start_s"],
            "hosts setup s": tb.network.profile["configure_hosts_s"],
            "tc s": tb.network.profile["tc_trees_s"],
            "shell MB/host": round(rss_mb(hosts) / len(hosts), 2),
            "ovs-vswitchd MB": round(rss_mb([int(p) for p in vswitchd]), 1),
            "controller MB": round(rss_mb([tb.controller.popen.pid]), 1),
        }
        began = time.monotonic()
    row["teardown s"] = round(time.monotonic() - began, 1)
    print(f"k={k} teardown steps (s): {tb.network.teardown_profile}")
    row["left behind"] = len(leftovers())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--ports", default="auto", choices=["auto", "packet", "afxdp"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(k, Path(tmp), args.ports) for k in args.k]
    table = Table(title="fat-tree start-up and teardown (seconds; ready/reachable since run start)")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in COLUMNS))
    Console(width=250).print(table)
    if len(rows) > 1:
        small, big = rows[0], rows[-1]
        for key in ("ready s", "reachable s", "teardown s"):
            print(f"ratio {key} k={big['k']}/k={small['k']}: {big[key] / small[key]:.1f}x")


if __name__ == "__main__":
    main()
