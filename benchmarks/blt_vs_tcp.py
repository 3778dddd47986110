"""TCP vs the bounded-loss-tolerant transport on one network-bound job, at several
random link loss rates, in one go.

    sudo .venv/bin/python benchmarks/blt_vs_tcp.py [--losses 0 1 5 10] [--iterations 100]

The job: a parameter server on one side of a dumbbell and 4 workers on the other,
every link 100 Mb/s, random loss on the bottleneck link (each direction), so every
message crosses exactly one lossy link; an MLP with 85k parameters (340 kB per
message), so each iteration moves ~2.7 MB through the bottleneck and waits on the
slowest message. For each loss rate and transport it prints the mean and p99 of the
iteration time (slowest worker per iteration), the blt/tcp speedup, and the final
test accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.runner import run_spec


def spec(transport: str, loss_pct: float, iterations: int) -> dict:
    return {
        "name": f"{transport}-loss{loss_pct:g}",
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
                "transport": {"kind": transport},
                "iterations": iterations,
                "batch_size": 32,
                "lr": 0.1,
                "momentum": 0.5,
                "eval_every": iterations,
            }
        ],
    }


def measure(workdir: Path, transport: str, loss_pct: float, iterations: int) -> dict:
    data = spec(transport, loss_pct, iterations)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", type=float, nargs="+", default=[0, 1, 5, 10])
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    table = Table(title=f"blt vs tcp, PS with 4 workers, {args.iterations} iterations")
    for col in (
        "loss %",
        "transport",
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
            tcp = measure(Path(tmp), "tcp", loss, args.iterations)
            blt = measure(Path(tmp), "blt", loss, args.iterations)
            for name, row in (("tcp", tcp), ("blt", blt)):
                speed_mean = tcp["mean_s"] / row["mean_s"] if name == "blt" else 1.0
                speed_p99 = tcp["p99_s"] / row["p99_s"] if name == "blt" else 1.0
                table.add_row(
                    f"{loss:g}",
                    name,
                    row["status"],
                    f"{row['mean_s']:.3f}",
                    f"{row['p99_s']:.3f}",
                    f"{speed_mean:.2f}x",
                    f"{speed_p99:.2f}x",
                    f"{row['accuracy']:.3f}",
                )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
