"""A training job beside web-search background traffic at load 0.5 on an
oversubscribed fat-tree: tcp against blt (APNet'19's setting), and the background
flows' completion times with and without MLNET `fixed` priority for the job.

    sudo .venv/bin/python benchmarks/background.py [--iterations 100] [--load 0.5] [--keep DIR]

Fabric: k=4 fat-tree, 10 Mb/s host links, 2.5 Mb/s edge-aggregation and
aggregation-core links: each edge switch has 20 Mb/s of hosts below it and 5 Mb/s
above, 1:4 oversubscription. The job: a parameter server and 4 workers, spread
(so its traffic crosses the core), MLP [64] on digits (19 kB per message). The
traffic: Poisson flows of the DCTCP web-search sizes among the 11 other hosts, each
host offering `--load` x its 10 Mb/s, for the whole run. Most of that traffic leaves
its rack, so at load 0.5 the uplinks are offered about twice what they carry: the
delivered load column shows by how much.

Arms differ only in the variable named: the same seed, placement, flow schedule
(seeded) and tc trees (`network.priority_bands: always` everywhere, so `fixed`
changes only the marking, not the buffers). The control arms run the job with no
traffic. A ratio, and the flows' FCTs, are printed only from runs that ended `ok` and
that their fidelity verdict trusts; any other arm's row says why it is left out.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.results.flows import fct_by_bucket
from testbed.results.verdict import ratio_cell, read_verdict
from testbed.runner import run_spec

# Host links; edge-aggregation and aggregation-core links are a quarter of it. At 40 Mb/s
# the userspace datapath (ovs-vswitchd) used 93% of the machine with the traffic on, and
# the job's iterations took 10-35 s: 10 Mb/s keeps the machine below 60% busy.
HOST_MBPS = 10.0
# arm -> (transport, controller.priority, traffic on)
ARMS = {
    "tcp alone": ("tcp", "none", False),
    "blt alone": ("blt", "none", False),
    "tcp + traffic": ("tcp", "none", True),
    "blt + traffic": ("blt", "none", True),
    "tcp + traffic, fixed": ("tcp", "fixed", True),
}


def _slug(arm: str) -> str:
    return arm.replace(" + ", "-").replace(", ", "-").replace(" ", "-")


def spec(arm: str, iterations: int, load: float) -> dict:
    transport, policy, traffic = ARMS[arm]
    return {
        "name": f"background-load{round(load * 100)}-" + _slug(arm),
        "seed": 1,
        "topology": {
            "kind": "fat-tree",
            "k": 4,
            "link": {"bw_mbps": HOST_MBPS},
            "tiers": {"edge": {"bw_mbps": HOST_MBPS / 4}, "core": {"bw_mbps": HOST_MBPS / 4}},
        },
        "network": {"priority_bands": "always"},
        "controller": {"priority": policy, "priority_classes": 4},
        "jobs": [
            {
                "name": "job",
                "model": {"name": "mlp", "hidden": [64]},
                "workers": 4,
                "servers": 1,
                "transport": {"kind": "blt", "loss_bound": 0.1} if transport == "blt" else "tcp",
                "iterations": iterations,
                "eval_every": iterations,
                "priority": 0,  # used by `fixed` only: the highest class
            }
        ],
        "traffic": (
            [{"kind": "flows", "load": load, "distribution": "websearch"}] if traffic else []
        ),
    }


def measure(out: Path, arm: str, iterations: int, load: float, reuse: bool) -> dict:
    """Run one arm into out/<name> (or, with `reuse`, read the run already there)."""
    data = spec(arm, iterations, load)
    run_dir = out / data["name"]
    if not (reuse and (run_dir / "jobs.csv").exists()):
        run_dir = run_spec(data, run_dir, "benchmark").run_dir
    return summarize(arm, run_dir)


def summarize(arm: str, run_dir: Path) -> dict:
    """The job's iteration times and, with traffic, the flows' load and FCT."""
    job = pd.read_csv(run_dir / "jobs.csv").iloc[0]
    its = pd.read_csv(run_dir / "iterations.csv")
    per_iteration = its.groupby("iteration")["iter_s"].max()  # the slowest worker's
    row = {
        "arm": arm,
        "verdict": read_verdict(run_dir),
        "status": job["status"],
        "jct_s": job["jct_s"],
        "mean_iter_s": per_iteration.mean(),
        "p99_iter_s": per_iteration.quantile(0.99),
        "accuracy": job["final_accuracy"],
    }
    flows_csv = run_dir / "flows.csv"
    if flows_csv.exists() and row["verdict"].usable:
        flows = pd.read_csv(flows_csv)
        traffic = pd.read_csv(run_dir / "traffic.csv").iloc[0]
        row["offered"] = traffic["offered_load"]
        row["delivered"] = traffic["delivered_load"]
        row["flows"] = f"{int(traffic['completed'])}/{int(traffic['flows'])}"
        buckets = fct_by_bucket(flows).set_index("bucket")
        done = flows[flows["completed"]]
        row["fct_p50_s"] = done["fct_s"].median()
        row["fct_p99_s"] = done["fct_s"].quantile(0.99)
        row["small_p50_s"] = buckets.loc["<100kB", "fct_p50_s"]
        row["small_p99_s"] = buckets.loc["<100kB", "fct_p99_s"]
        # Kept for the common-window comparison (flows_in_window).
        row["_flows"] = flows.assign(t=flows["start_s"] - traffic["window_start_s"])
        row["_window_s"] = traffic["window_s"]
    return row


def common_window(rows: dict) -> dict:
    """FCTs over the window every traffic arm ran for, censored at its end.

    On an overloaded fabric the backlog grows for as long as a run lasts, so a longer
    run (a slower job) shows longer FCTs for that reason alone: compare only flows that
    started within the shortest arm's window, counting as completed only those that
    finished within it."""
    arms = {a: r for a, r in rows.items() if "_flows" in r}
    if not arms:
        return {}
    w = min(r["_window_s"] for r in arms.values())
    out = {}
    for arm, r in arms.items():
        f = r["_flows"][r["_flows"]["t"] < w]
        done = f[f["completed"].fillna(False).astype(bool) & (f["t"] + f["fct_s"] <= w)]
        small = done[done["size_bytes"] < 100e3]["fct_s"]
        out[arm] = {"window_s": w, "flows": f"{len(done)}/{len(f)}",
                    "fct_p50_s": done["fct_s"].median(), "fct_p99_s": done["fct_s"].quantile(0.99),
                    "small_p50_s": small.median(), "small_p99_s": small.quantile(0.99)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--load", type=float, default=0.5, help="the flows' load (0-1]")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--reuse", action="store_true", help="read runs already in --keep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        rows = {arm: measure(out, arm, args.iterations, args.load, args.reuse) for arm in ARMS}
    console = Console(width=160)
    console.print(job_table(rows, args.iterations))
    console.print(flow_table(rows, args.load))
    console.print(window_table(common_window(rows)))
    for arm, r in rows.items():
        if not r["verdict"].usable:
            print(f"{arm}: left out, {r['verdict'].why_not()}")


def _ratio(rows: dict, arm: str, base: str, key: str) -> str:
    mine, theirs = rows[arm], rows[base]
    return ratio_cell(mine[key], theirs[key], mine["verdict"], theirs["verdict"])


def job_table(rows: dict, iterations: int) -> Table:
    table = Table(title=f"the job: 4 workers + 1 server, {iterations} iterations")
    for col in ("arm", "status", "JCT s", "mean iter s", "p99 iter s", "accuracy",
                "mean vs tcp same traffic", "p99 vs tcp same traffic"):  # fmt: skip
        table.add_column(col, justify="right")
    for arm, r in rows.items():
        base = "tcp + traffic" if "traffic" in arm else "tcp alone"
        table.add_row(
            arm, r["status"], _f(r["jct_s"], 1), _f(r["mean_iter_s"], 3),
            _f(r["p99_iter_s"], 3), _f(r["accuracy"], 3),
            _ratio(rows, arm, base, "mean_iter_s"), _ratio(rows, arm, base, "p99_iter_s"),
        )  # fmt: skip
    return table


def _f(value, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def flow_table(rows: dict, load: float) -> Table:
    table = Table(title=f"background flows (web-search sizes, load {load:g} offered)")
    for col in ("arm", "offered", "delivered", "completed", "FCT p50 s", "FCT p99 s",
                "<100kB p50 s", "<100kB p99 s"):  # fmt: skip
        table.add_column(col, justify="right")
    for arm, r in rows.items():
        if "offered" in r:
            table.add_row(
                arm, _f(r["offered"], 3), _f(r["delivered"], 3), r["flows"],
                _f(r["fct_p50_s"], 3), _f(r["fct_p99_s"], 2),
                _f(r["small_p50_s"], 3), _f(r["small_p99_s"], 2),
            )  # fmt: skip
    return table


def window_table(windows: dict) -> Table:
    w = next(iter(windows.values()))["window_s"] if windows else 0
    table = Table(title=f"the same flows over the first {w:.0f} s of every traffic arm")
    for col in ("arm", "completed in window", "FCT p50 s", "FCT p99 s", "<100kB p50 s",
                "<100kB p99 s"):  # fmt: skip
        table.add_column(col, justify="right")
    for arm, r in windows.items():
        table.add_row(
            arm, r["flows"], _f(r["fct_p50_s"], 3), _f(r["fct_p99_s"], 2),
            _f(r["small_p50_s"], 3), _f(r["small_p99_s"], 2),
        )  # fmt: skip
    return table


if __name__ == "__main__":
    main()
