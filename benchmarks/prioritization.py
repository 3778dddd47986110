"""MLNET traffic management: three concurrent jobs of different sizes share one
bottleneck, under none, smallest-first and las, in one go.

    sudo .venv/bin/python benchmarks/prioritization.py

Dumbbell, 20 Mb/s bottleneck, every job a parameter server on the left and two
workers on the right, so all gradient and parameter traffic crosses the bottleneck:

    small: MLP [32]        ~2k parameters  (  9 kB per message)
    mid:   MLP [256]      ~19k parameters  ( 77 kB per message)
    big:   MLP [256, 256] ~85k parameters  (340 kB per message)

Arms differ only in the policy. Every switch port buffers `queue_pkts` packets
whatever the number of bands (testbed.network.tc splits it among them), and the
control arm `none, same bands` has the prioritized arms' exact tc trees with nothing
marked (`network.priority_bands: always`), so its ratio separates the priorities from
the buffer partitioning. `none` is what a user gets by default (one fifo per port).

Prints per-job JCT and class, mean JCT per arm and its ratio to the control arm
(MLNET reports -25% median makespan from prioritization alone). An arm whose run
did not end `ok`, or that its fidelity verdict does not trust, gets no ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.results.verdict import Verdict, ratio_cell, read_verdict
from testbed.runner import run_spec

JOBS = [
    {"name": "small", "model": {"name": "mlp", "hidden": [32]}, "placement": ["h1", "h7", "h8"]},
    {"name": "mid", "model": {"name": "mlp", "hidden": [256]}, "placement": ["h2", "h9", "h10"]},
    {
        "name": "big",
        "model": {"name": "mlp", "hidden": [256, 256]},
        "placement": ["h3", "h11", "h12"],
    },
]
# arm -> (controller.priority, network.priority_bands)
ARMS = {
    "none": ("none", "auto"),
    "none, same bands": ("none", "always"),
    "smallest-first": ("smallest-first", "auto"),
    "las": ("las", "auto"),
}
CONTROL = "none, same bands"


def spec(arm: str, iterations: int) -> dict:
    policy, bands = ARMS[arm]
    return {
        "name": f"prio-{policy}-{bands}",
        "topology": {
            "kind": "dumbbell",
            "hosts_per_side": 6,
            "tiers": {"bottleneck": {"bw_mbps": 20}},
        },
        "network": {"priority_bands": bands},
        # las: demote after 2 MB and 10 MB sent. Over 40 iterations (pushes + pulls, as
        # counted at the ingress edges) small sends ~1.5 MB, mid ~12 MB, big ~54 MB: the
        # first threshold sits above the smallest job, like PIAS sizes its thresholds.
        "controller": {
            "priority": policy,
            "priority_classes": 3,
            "poll_ms": 200,
            "las_thresholds_mb": [2, 10],
        },
        "jobs": [
            {**job, "workers": 2, "servers": 1, "iterations": iterations, "eval_every": iterations}
            for job in JOBS
        ],
    }


def measure(workdir: Path, arm: str, iterations: int) -> tuple[pd.DataFrame, Verdict]:
    data = spec(arm, iterations)
    result = run_spec(data, workdir / data["name"], "benchmark")
    return result.jobs.set_index("job"), read_verdict(result.run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {arm: measure(Path(tmp), arm, args.iterations) for arm in ARMS}
    table = Table(title=f"three jobs on a 20 Mb/s bottleneck, {args.iterations} iterations each")
    columns = ("arm", *[f"{j['name']} JCT s (class)" for j in JOBS], "mean JCT s", "vs control")
    for col in columns:
        table.add_column(col, justify="right")
    control, control_verdict = results[CONTROL]
    for arm, (jobs, verdict) in results.items():
        cells = []
        for job in (j["name"] for j in JOBS):
            row = jobs.loc[job]
            cls = (
                "-"
                if pd.isna(row["priority_initial"])
                else f"{int(row['priority_initial'])}->{int(row['priority_final'])}"
            )
            cells.append(f"{row['jct_s']:.1f} ({cls}) {row['status']}")
        mean = jobs["jct_s"].mean()
        ratio = ratio_cell(mean, control["jct_s"].mean(), verdict, control_verdict)
        table.add_row(arm, *cells, f"{mean:.1f}", ratio)
    Console(width=150).print(table)
    for arm, (_, verdict) in results.items():
        if not verdict.usable:
            print(f"{arm}: {verdict.why_not()}")


if __name__ == "__main__":
    main()
