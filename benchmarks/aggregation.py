"""MLNET's aggregation trees against direct parameter-server traffic, on a fabric whose
upper tier is oversubscribed 1:4, in one go.

    sudo .venv/bin/python benchmarks/aggregation.py [--iterations 30] [--servers 1 4]
                                                    [--fabric fat-tree leaf-spine]

The networks (host links 100 Mb/s everywhere):

- `fat-tree`: k=4, edge links 100 Mb/s, core links 25 Mb/s (each pod has 4 x 25 Mb/s
  towards the core for 4 x 100 Mb/s of hosts: 1:4). 2 hosts per rack. Measured tier:
  core.
- `leaf-spine`: 4 spines, 4 leaves of 4 hosts, fabric links 25 Mb/s (each leaf has
  4 x 25 Mb/s up for 4 x 100 Mb/s of hosts: 1:4). 4 hosts per rack. Measured tier:
  fabric.

The job: one PS job, 12 workers and S servers placed `spread` (every pod, every rack),
an MLP [512] on digits (38,410 parameters, 154 kB per push), TCP, same seed. Arms,
differing only in `aggregation`: `none`, `rack`, `binary`; once with 1 server and once
with 4.

Upper-tier bytes per iteration, theory. A tree edge child -> parent of shard s carries
the push (4 n_s bytes) up and the pull (4 n_s bytes) down; if child and parent are in
different pods (a leaf-spine's pod is its leaf) the path crosses 2 upper-tier links
(agg -> core -> agg, or leaf -> spine -> leaf) each way, else none. So theory = sum over
edges crossing pods of 2 x 2 x 4 n_s bytes (`none`: every worker is a child of every
server). On the fat-tree with 1 server (h1, pod 0): 9 of the 12 workers are outside
pod 0, in 6 racks (3 racks hold 2 of them) -> `none` has 9 crossing edges and `rack` 6:
a ratio of 1.5, the number of the job's workers per rack outside the server's pod. A
k=4 fat-tree has 2 hosts per rack, so no placement of this job can make `rack` save
more than 2x on its core. On the leaf-spine (server on leaf 1 with 3 workers, 3 leaves
of 3 workers), `none` has 9 crossing edges and `rack` 3: a ratio of 3. `binary` cuts
the workers into contiguous (pod-ordered) halves, so its crossings depend only on the
sizes. Measured: the job's bytes on upper-tier links from the switches' per-job
counters (jobs.csv `bytes_core_tier` / `bytes_fabric_tier`), over iterations; they
include Ethernet/IP/TCP headers and ACKs (~7% over the payload), so measured / theory
should sit at 1.0-1.15.

It prints per arm: upper-tier bytes per iteration (measured, theory, ratio), mean
iteration time, JCT, final accuracy and the JCT ratio to `none` of the same fabric and
server count. A run that did not end `ok`, or that its fidelity verdict does not
trust, gets no ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.results.verdict import ratio_cell, read_verdict
from testbed.runner import run_spec
from testbed.spec import validate
from testbed.training.ps import shard_bounds
from testbed.training.size import parameter_count
from topologies import build_topology

ARMS = ("none", "rack", "binary")
WORKERS = 12


# fabric -> (topology, the oversubscribed tier that jobs.csv reports)
FABRICS = {
    "fat-tree": (
        {"kind": "fat-tree", "k": 4, "link": {"bw_mbps": 100}, "tiers": {"core": {"bw_mbps": 25}}},
        "core",
    ),
    "leaf-spine": (
        {
            "kind": "leaf-spine",
            "spines": 4,
            "leaves": 4,
            "hosts_per_leaf": 4,
            "link": {"bw_mbps": 100},
            "tiers": {"fabric": {"bw_mbps": 25}},
        },
        "fabric",
    ),
}


def spec(fabric: str, arm: str, servers: int, iterations: int) -> dict:
    return {
        "name": f"agg-{fabric}-{arm}-s{servers}",
        "seed": 1,
        "topology": FABRICS[fabric][0],
        "jobs": [
            {
                "name": "j",
                "model": {"name": "mlp", "hidden": [512]},
                "workers": WORKERS,
                "servers": servers,
                "placement": "spread",
                "aggregation": arm,
                "transport": "tcp",
                "iterations": iterations,
                "batch_size": 32,
                "lr": 0.1,
                "momentum": 0.5,
                "eval_every": iterations,
            }
        ],
    }


def edges(meta: dict) -> list[tuple[int, str, str]]:
    """(shard, child host, parent host) of every tree edge of the run."""
    trees = meta.get("trees", {}).get("j")
    if not trees:  # none: every worker straight to every server
        placed = meta["placement"]["j"]
        return [(s, w, srv) for s, srv in enumerate(placed["servers"]) for w in placed["workers"]]
    out = []
    for s, tree in enumerate(trees):
        for parent, children in tree.items():
            out += [(s, c.split("@")[1], parent.split("@")[1]) for c in children]
    return out


def theory_upper_bytes(data: dict, meta: dict) -> float:
    """Payload bytes the trees put on upper-tier links per iteration (see the docstring)."""
    exp = validate(data, "benchmark")
    pod = {h: info.pod for h, info in build_topology(exp.topology).host_info.items()}
    n = parameter_count(exp.jobs[0])
    shard = [hi - lo for lo, hi in shard_bounds(n, exp.jobs[0].servers)]
    crossing = [s for s, child, parent in edges(meta) if pod[child] != pod[parent]]
    return sum(2 * 2 * 4 * shard[s] for s in crossing)


def measure(workdir: Path, fabric: str, arm: str, servers: int, iterations: int) -> dict:
    data = spec(fabric, arm, servers, iterations)
    result = run_spec(data, workdir / data["name"], "benchmark")
    meta = json.loads((result.run_dir / "metadata.json").read_text())
    job = pd.read_csv(result.run_dir / "jobs.csv").iloc[0]
    its = pd.read_csv(result.run_dir / "iterations.csv")
    return {
        "status": result.status,
        "verdict": read_verdict(result.run_dir),
        "upper_measured": job.get(f"bytes_{FABRICS[fabric][1]}_tier", float("nan")) / iterations,
        "upper_theory": theory_upper_bytes(data, meta),
        "mean_iter_s": its.groupby("iteration")["iter_s"].max().mean(),
        "jct_s": job["jct_s"],
        "accuracy": job["final_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--fabric", nargs="+", choices=sorted(FABRICS), default=list(FABRICS))
    args = parser.parse_args()
    table = Table(title=f"aggregation trees, upper tier 1:4, {WORKERS} workers spread")
    for col in (
        "fabric", "servers", "arm", "status", "upper-tier kB/iter measured",
        "upper-tier kB/iter theory", "measured/theory", "upper bytes vs none", "mean iter s",
        "JCT s", "JCT / none", "accuracy",
    ):  # fmt: skip
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for fabric in args.fabric:
            for servers in args.servers:
                rows = {a: measure(Path(tmp), fabric, a, servers, args.iterations) for a in ARMS}
                add_rows(table, fabric, servers, rows)
    Console(width=200).print(table)


def add_rows(table: Table, fabric: str, servers: int, rows: dict[str, dict]) -> None:
    """One row per arm; ratios against `none` only where both runs are usable."""
    base = rows["none"]
    for arm, row in rows.items():
        both = (row["verdict"], base["verdict"])
        table.add_row(
            fabric,
            str(servers),
            arm,
            row["status"],
            f"{row['upper_measured'] / 1e3:.1f}",
            f"{row['upper_theory'] / 1e3:.1f}",
            ratio_cell(row["upper_measured"], row["upper_theory"], row["verdict"]),
            ratio_cell(base["upper_measured"], row["upper_measured"], *both),
            f"{row['mean_iter_s']:.3f}",
            f"{row['jct_s']:.1f}",
            ratio_cell(row["jct_s"], base["jct_s"], *both),
            f"{row['accuracy']:.3f}",
        )
        print(fabric, arm, servers, row, flush=True)  # as it goes: a crash loses nothing
        if not row["verdict"].usable:
            print(f"{fabric} {servers} {arm}: {row['verdict'].why_not()}")


if __name__ == "__main__":
    main()
