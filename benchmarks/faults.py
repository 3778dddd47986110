"""Recovery from link failures, per routing mode, and what a failure costs a job.

    sudo .venv/bin/python benchmarks/faults.py [--faults 10] [--keep DIR]

Fabric: k=4 fat-tree, 10 Mb/s links, `network.priority_bands: always` (the recovery
probes ride the top band, so the job's full queues do not read as outages). The job:
a TCP parameter server job, 2 servers in pod 0 (h1, h2) and 6 workers in the other
pods, MLP [256] (77 kB per message), so its traffic crosses every pod-0 uplink.

Per routing mode (ecmp, two-level) two arms that differ only in the faults: the same
seed, placement, model and iterations.
- `faults`: `--faults` times, one of pod 0's 4 aggregation-core links goes down (in
  turn) and comes back 2.5 s later; the next goes down 5 s after the last.
- `control`: the same job, no fault.

Printed: the recovery (faults.csv: every probed pair through again) p50 and max over
the link-down faults; the controller's detection delay; and the iteration-time spike,
the slowest iteration starting in the 2 s after each fault against the control
arm's p50 and p99 iteration time. No figure from a run that did not end `ok` or that
its fidelity verdict does not trust: its row says why instead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.results.verdict import ratio_cell, read_verdict
from testbed.runner import run_spec

UPLINKS = [("a0_0", "c1_1"), ("a0_1", "c2_1"), ("a0_0", "c1_2"), ("a0_1", "c2_2")]
FIRST_S, EVERY_S, DOWN_FOR_S = 5.0, 5.0, 2.5
PLACEMENT = ["h1", "h2", "h5", "h9", "h13", "h6", "h10", "h14"]
SPIKE_WINDOW_S = 2.0
COLUMNS = [
    "routing", "status (faults / control)", "recovery p50 s", "recovery max s",
    "detection p50 ms", "pairs disrupted", "mean iter s (faults / control)",
    "spike: slowest iter after a fault, p50 / max s", "control iter p50 / p99 s",
]  # fmt: skip


def spec(routing: str, arm: str, faults: int, iterations: int) -> dict:
    schedule = []
    for i in range(faults if arm == "faults" else 0):
        link, at = list(UPLINKS[i % len(UPLINKS)]), FIRST_S + i * EVERY_S
        schedule += [{"link": link, "action": "down", "at_s": at},
                     {"link": link, "action": "up", "at_s": at + DOWN_FOR_S}]  # fmt: skip
    return {
        "name": f"faults-{routing}-{arm}",
        "seed": 1,
        "topology": {"kind": "fat-tree", "k": 4, "link": {"bw_mbps": 10}},
        "controller": {"routing": routing},
        "network": {"priority_bands": "always"},
        "results": {"sample_s": 0.5},
        "jobs": [{
            "name": "j", "workers": 6, "servers": 2, "placement": PLACEMENT,
            "model": {"name": "mlp", "hidden": [256]}, "iterations": iterations,
        }],
        "faults": schedule,
    }  # fmt: skip


def measure(out: Path, routing: str, arm: str, faults: int, iterations: int) -> dict:
    result = run_spec(spec(routing, arm, faults, iterations), out / f"{routing}-{arm}")
    its = pd.read_csv(result.run_dir / "iterations.csv")
    # one time per iteration: the slowest worker's (a synchronous step waits for it)
    steps = its.groupby("iteration").agg(iter_s=("iter_s", "max"), end_s=("time_s", "max"))
    steps["start_s"] = steps["end_s"] - steps["iter_s"]
    row = {"status": result.status, "steps": steps, "mean_iter_s": steps["iter_s"].mean(),
           "verdict": read_verdict(result.run_dir)}  # fmt: skip
    path = result.run_dir / "faults.csv"
    row["faults"] = pd.read_csv(path) if path.exists() else pd.DataFrame()
    return row


def spikes(steps: pd.DataFrame, faults: pd.DataFrame) -> list[float]:
    """The slowest iteration overlapping the SPIKE_WINDOW_S after each link-down fault."""
    worst = []
    for t in faults[faults["what"].str.endswith(" down")]["time_s"]:
        near = steps[(steps["end_s"] >= t) & (steps["start_s"] <= t + SPIKE_WINDOW_S)]
        if len(near):
            worst.append(float(near["iter_s"].max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument(
        "--iterations", type=int, default=0, help="default: enough to outlast the faults"
    )
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args()
    # ~0.4-0.55 s per iteration here; the job must outlast the last fault by a few s
    iterations = args.iterations or int((FIRST_S + args.faults * EVERY_S + 10) / 0.4)
    out = args.keep or Path(tempfile.mkdtemp(prefix="faults-"))
    console = Console(width=250)
    table = Table(title=f"{args.faults} link-down faults per routing mode ({out})")
    for col in COLUMNS:
        table.add_column(col)
    runs = {}
    for routing in ("ecmp", "two-level"):
        for arm in ("faults", "control"):
            runs[routing, arm] = measure(out, routing, arm, args.faults, iterations)
        table.add_row(routing, *_cells(runs[routing, "faults"], runs[routing, "control"]))
    console.print(table)
    for (routing, arm), run in runs.items():
        if not run["verdict"].usable:
            print(f"{routing} {arm}: {run['verdict'].why_not()}")


def _cells(hit: dict, base: dict) -> list[str]:
    """The columns after `routing`; figures only from usable runs (module docstring)."""
    status = f"{hit['status']} / {base['status']}"
    if not hit["verdict"].usable:
        return [status] + ["- (faults arm not usable)"] * (len(COLUMNS) - 2)
    f = hit["faults"]
    down = f[f["what"].str.endswith(" down")] if len(f) else f
    rec = down["recovery_s"].dropna().tolist() if len(down) else []
    detect = (down["detected_at_s"] - down["time_s"]).dropna().tolist() if len(down) else []
    worst = spikes(hit["steps"], f) if len(f) else []
    control = base["steps"]["iter_s"]
    compared = base["verdict"].usable
    unrecovered = "" if len(rec) == len(down) else f" ({len(down) - len(rec)} unrecovered)"
    ratio = ratio_cell(hit["mean_iter_s"], base["mean_iter_s"], hit["verdict"], base["verdict"])
    return [
        status,
        _num(statistics.median(rec)) if rec else "-",
        _num(max(rec)) + unrecovered if rec else "-",
        f"{statistics.median(detect) * 1000:.1f}" if detect else "-",
        f"{int(down['disrupted_pairs'].sum())}/{int(down['probed_pairs'].sum())}"
        if len(down)
        else "-",
        f"{_num(hit['mean_iter_s'])} / {_num(base['mean_iter_s'])} ({ratio})",
        f"{_num(statistics.median(worst))} / {_num(max(worst))}" if worst else "-",
        f"{_num(control.median())} / {_num(control.quantile(0.99))}"
        if compared
        else "- (control not usable)",
    ]


def _num(value: float) -> str:
    return f"{value:.3f}"


if __name__ == "__main__":
    main()
