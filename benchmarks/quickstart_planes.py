"""The quickstart on each forwarding plane: what the switch costs a real training run.

    sudo .venv/bin/python benchmarks/quickstart_planes.py [--mbps 10 100]
        [--ports packet afxdp] [--out DIR]

Runs configs/quickstart.yaml as a user would (`testbed run`), with every link at each
`--mbps` and on each plane (`network.ports`); nothing else differs between the arms
(same seed, placement, buffers). Printed per run: whether it is ok and trustworthy
(and why not), ovs-vswitchd's busy share of one core (p50/p95), the job's mean
iteration time, and the network's ready and teardown seconds. Then, per rate, each
plane's figures over the first plane's, from this one invocation. A run that is not
`ok` yields no ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

SPEC = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
FIGURES = ["ovs_p50_pct", "ovs_p95_pct", "mean_iter_ms", "ready_s", "teardown_s"]


def run(mbps: float, ports: str, out: Path) -> dict:
    """One quickstart run; its figures from the run directory alone."""
    sets = [f"network.ports={ports}", f"topology.link.bw_mbps={mbps:g}"]
    args = [sys.executable, "-m", "testbed", "run", str(SPEC), "--out", str(out)]
    args += [arg for s in sets for arg in ("--set", s)]
    proc = subprocess.run(args, capture_output=True, text=True)
    meta = (
        json.loads((out / "metadata.json").read_text()) if (out / "metadata.json").exists() else {}
    )
    fidelity = meta.get("fidelity") or {}
    jobs = pd.read_csv(out / "jobs.csv") if (out / "jobs.csv").exists() else pd.DataFrame()
    return {
        "mbps": mbps,
        "ports": meta.get("platform", {}).get("ports", ports),
        "status": meta.get("status", f"exit {proc.returncode}"),
        "trustworthy": fidelity.get("trustworthy"),
        "reasons": "; ".join(fidelity.get("reasons", []))[:160],
        "ovs_p50_pct": fidelity.get("ovs_core_busy_p50_pct"),
        "ovs_p95_pct": fidelity.get("ovs_core_busy_p95_pct"),
        "mean_iter_ms": round(1000 * jobs["mean_iter_s"].mean(), 1) if len(jobs) else None,
        "ready_s": meta.get("network_ready_s"),
        "teardown_s": meta.get("teardown_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbps", type=float, nargs="+", default=[10, 100])
    parser.add_argument("--ports", nargs="+", default=["packet", "afxdp"])
    parser.add_argument("--out", help="keep the run directories here (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        rows = []
        for mbps in args.mbps:
            for ports in args.ports:
                rows.append(run(mbps, ports, root / f"{ports}-{mbps:g}"))
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.drop(columns="reasons").to_string(index=False))
    for mbps, group in table.groupby("mbps"):
        base = group.iloc[0]
        for _, row in group.iloc[1:].iterrows():
            if not row["status"] == base["status"] == "ok":
                print(f"{mbps:g} Mb/s: no ratio ({row['ports']} {row['status']}, "
                      f"{base['ports']} {base['status']})")  # fmt: skip
                continue
            ratios = ", ".join(f"{f} {row[f] / base[f]:.2f}x" for f in FIGURES if base[f])
            print(f"{mbps:g} Mb/s, {row['ports']} over {base['ports']}: {ratios}")


if __name__ == "__main__":
    main()
