"""The jobs of a cluster spec across its servers, against the same jobs on the first
server alone.

    sudo .venv/bin/python benchmarks/cluster.py SPEC.yaml [--keep DIR] [--json FILE]

SPEC has a `cluster:` section. Two arms that differ only in where the nodes run:
- `cluster`: SPEC as written, over every server;
- `one server`: SPEC without `cluster:`, on this machine (the first server).
Both get the same seed, topology, tc trees, placement and `launcher: exec` (a cluster
starts every process as a fresh interpreter), and loss through netem (a cluster's).

Printed per job and arm: status, mean iteration time, job completion time, start-up
and final accuracy; then the ratio of mean iteration times (one server / cluster, >1:
the cluster is faster), only where both arms are `ok`; then how long each network
took to be ready, the tunnelled links and the bytes they carried (links.csv).
Whether either arm was CPU-bound is in each run's `fidelity` (metadata.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from testbed.results.verdict import read_verdict
from testbed.runner import run_spec

ARMS = ("cluster", "one server")


def arms(raw: dict) -> dict[str, dict]:
    """The two specs, from one spec with a `cluster:` section."""
    if not raw.get("cluster"):
        raise SystemExit("benchmarks/cluster.py: the spec has no cluster: section")
    network = {**raw.get("network", {}), "loss_backend": "netem"}
    cluster = {**raw, "launcher": "exec", "network": network}
    one = {k: v for k, v in cluster.items() if k != "cluster"}
    return {"cluster": cluster, "one server": {**one, "name": f"{raw['name']}-one"}}


def tunnel_bytes(run_dir: Path) -> int:
    """Bytes sent into the tunnels over the run, both directions (links.csv)."""
    meta = json.loads((run_dir / "metadata.json").read_text())
    tunnels = {t.replace("-", "->") for t in meta["cluster"]["tunnelled_links"]}
    tunnels |= {"->".join(reversed(t.split("->"))) for t in tunnels}
    last = pd.read_csv(run_dir / "links.csv").groupby("direction").last()
    return int(last.loc[sorted(tunnels), "tx_bytes"].sum())


def compare(raw: dict, out: Path) -> dict:
    """Run both arms into `out`; return their figures (JSON-ready)."""
    results = {}
    for arm, spec in arms(raw).items():
        result = run_spec(spec, out / arm.replace(" ", "-"), source=f"{raw['name']} ({arm})")
        meta = json.loads((result.run_dir / "metadata.json").read_text())
        verdict = read_verdict(result.run_dir)
        results[arm] = {
            "status": result.status,
            "error": result.error,
            "left_out": verdict.why_not(),  # '' when the arm's figures may be compared
            "run_dir": str(result.run_dir),
            "network_ready_s": meta.get("network_ready_s"),
            "cpu_saturated_share": (meta.get("fidelity") or {}).get("cpu_saturated_share"),
            "jobs": result.jobs.to_dict("records"),
            "tunnel_bytes": tunnel_bytes(result.run_dir) if arm == "cluster" else 0,
            "tunnelled_links": meta.get("cluster", {}).get("tunnelled_links", []),
        }
    ok = not any(results[arm]["left_out"] for arm in ARMS)
    ratios = {}
    for mine, theirs in zip(results["cluster"]["jobs"], results["one server"]["jobs"]):
        if ok and mine["status"] == theirs["status"] == "ok":
            ratios[mine["job"]] = round(theirs["mean_iter_s"] / mine["mean_iter_s"], 3)
    return {"arms": results, "iteration_ratio": ratios}


def show(figures: dict, console: Console) -> None:
    table = Table(title="one job, across the cluster and on one server")
    for column in ("arm", "job", "status", "mean iter s", "jct s", "startup s", "accuracy"):
        table.add_column(column)
    for arm, fig in figures["arms"].items():
        for job in fig["jobs"]:
            table.add_row(arm, job["job"], job["status"], f"{job['mean_iter_s']:.3f}",
                          f"{job['jct_s']:.1f}", f"{job['startup_s']:.1f}",
                          f"{job['final_accuracy']:.4f}")  # fmt: skip
    console.print(table)
    for job, ratio in figures["iteration_ratio"].items():
        console.print(f"{job}: mean iteration, one server / cluster = {ratio:.2f}x")
    for arm, fig in figures["arms"].items():
        if fig["left_out"]:
            console.print(f"no ratio: {arm} {fig['left_out']}")
    cluster = figures["arms"]["cluster"]
    console.print(
        f"network ready: {cluster['network_ready_s']} s on the cluster, "
        f"{figures['arms']['one server']['network_ready_s']} s on one server; "
        f"{len(cluster['tunnelled_links'])} tunnelled links carried "
        f"{cluster['tunnel_bytes'] / 1e6:.2f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec", type=Path, help="a spec with a cluster: section")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    raw = yaml.safe_load(args.spec.read_text())
    out = args.keep or Path(tempfile.mkdtemp(prefix="cluster-"))
    figures = compare(raw, out)
    show(figures, Console())
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
