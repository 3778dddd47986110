"""TCP vs the bounded-loss-tolerant transport on one network-bound job, at several
random link loss rates, in one go.

    sudo .venv/bin/python benchmarks/blt_vs_tcp.py [--losses 0 1 5 10] [--iterations 100]

The job: a parameter server on one side of a dumbbell and 4 workers on the other,
every link 100 Mb/s, random loss on the bottleneck link (each direction), so every
message crosses exactly one lossy link; an MLP with 85k parameters (340 kB per
message), so each iteration moves ~2.7 MB through the bottleneck and waits on the
slowest message.

Four arms per loss rate, differing only in the transport (same seed, placement,
buffers and model):

- `tcp`: cubic, unpaced (what a user gets);
- `tcp paced`: cubic, each connection capped at the share blt paces the same channel
  at (`pacing: fair-share`, SO_MAX_PACING_RATE);
- `blt bound 0`: blt made reliable (`loss_bound: 0`): blt's pacing, AIMD and NACKs,
  no loss tolerated;
- `blt bound 0.1`: the bounded-loss-tolerant transport.

`blt bound 0` against `tcp paced` is what blt's own loss recovery buys at the same
pacing; `blt bound 0.1` against `blt bound 0` is what tolerating loss buys. For each
arm it prints the mean and p99 of the iteration time (slowest worker per iteration),
the speedup over `tcp`, and the final test accuracy. An arm whose run is not `ok`,
or whose `tcp` arm is not, gets no speedup.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.runner import run_spec

ARMS = {
    "tcp": {"kind": "tcp"},
    "tcp paced": {"kind": "tcp", "pacing": "fair-share"},
    "blt bound 0": {"kind": "blt", "loss_bound": 0.0},
    "blt bound 0.1": {"kind": "blt", "loss_bound": 0.1},
}


def spec(arm: str, loss_pct: float, iterations: int) -> dict:
    return {
        "name": f"{arm.replace(' ', '-').replace('.', '')}-loss{loss_pct:g}",
        "topology": {
            "kind": "dumbbell",
            "hosts_per_side": 4,
            "link": {"bw_mbps": 100},
            "tiers": {"bottleneck": {"loss_pct": loss_pct}},
        },
        "jobs": [
            {
                "name": "j",
                "model": {"name": "mlp", "hidden": [256, 256]},
                "workers": 4,
                "servers": 1,
                "placement": ["h1", "h5", "h6", "h7", "h8"],
                "transport": ARMS[arm],
                "iterations": iterations,
                "batch_size": 32,
                "lr": 0.1,
                "momentum": 0.5,
                "eval_every": iterations,
            }
        ],
    }


def measure(workdir: Path, arm: str, loss_pct: float, iterations: int) -> dict:
    data = spec(arm, loss_pct, iterations)
    result = run_spec(data, workdir / data["name"], "benchmark")
    its = pd.read_csv(result.run_dir / "iterations.csv")
    step = its.groupby("iteration")["iter_s"].max()  # synchronous: the slowest worker
    acc = its.dropna(subset=["test_accuracy"]).sort_values("iteration")["test_accuracy"]
    return {
        "status": result.status,
        "mean_s": step.mean(),
        "p99_s": step.quantile(0.99),
        "accuracy": acc.iloc[-1] if len(acc) else float("nan"),
    }


def speedup(base: dict, row: dict, key: str) -> str:
    """base/row of `key`, only when both runs ended `ok`."""
    if base["status"] != "ok" or row["status"] != "ok":
        return "- (not ok)"
    return f"{base[key] / row[key]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", type=float, nargs="+", default=[0, 1, 5, 10])
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    table = Table(title=f"blt vs tcp, PS with 4 workers, {args.iterations} iterations")
    for col in (
        "loss %",
        "arm",
        "status",
        "mean iter s",
        "p99 iter s",
        "speedup mean",
        "speedup p99",
        "final accuracy",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for loss in args.losses:
            rows = {arm: measure(Path(tmp), arm, loss, args.iterations) for arm in ARMS}
            tcp = rows["tcp"]
            for arm, row in rows.items():
                table.add_row(
                    f"{loss:g}",
                    arm,
                    row["status"],
                    f"{row['mean_s']:.3f}",
                    f"{row['p99_s']:.3f}",
                    speedup(tcp, row, "mean_s"),
                    speedup(tcp, row, "p99_s"),
                    f"{row['accuracy']:.3f}",
                )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
