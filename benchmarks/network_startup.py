"""How long a fat-tree takes to come up: controller start -> all switches programmed
-> all-pairs reachability, for k = 4 and k = 8, measured in one run each.

    sudo .venv/bin/python benchmarks/network_startup.py [--k 4 8]

Prints seconds per phase and the k=8/k=4 ratio (this machine is shared and noisy:
compare ratios from one invocation, not absolute numbers across days).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from testbed.runner import run_spec


def measure(k: int, workdir: Path) -> dict:
    spec = {
        "name": f"startup-k{k}",
        "topology": {"kind": "fat-tree", "k": k},
        "jobs": [{"name": "probe", "workers": 1, "servers": 1, "iterations": 1}],
    }
    result = run_spec(spec, workdir / f"k{k}", "benchmark")
    meta = json.loads((result.run_dir / "metadata.json").read_text())
    hosts = k**3 // 4
    return {
        "k": k,
        "hosts": hosts,
        "switches": 5 * k * k // 4,
        "status": meta["status"],
        "network_ready_s": meta.get("network_ready_s"),
        "reachable_s": meta.get("reachable_s"),
        "pairs": hosts * (hosts - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(k, Path(tmp)) for k in args.k]
    table = Table(title="fat-tree start-up (seconds since run start)")
    for col in ("k", "hosts", "switches", "status", "network_ready_s", "reachable_s", "pairs"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            *(
                str(row[c])
                for c in (
                    "k",
                    "hosts",
                    "switches",
                    "status",
                    "network_ready_s",
                    "reachable_s",
                    "pairs",
                )
            )
        )
    Console().print(table)
    if len(rows) > 1 and rows[0]["network_ready_s"]:
        print(
            f"ratio network_ready k={rows[-1]['k']}/k={rows[0]['k']}: "
            f"{rows[-1]['network_ready_s'] / rows[0]['network_ready_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
