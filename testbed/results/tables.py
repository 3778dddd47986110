"""Tidy CSVs built from the run directory alone: the per-process JSONL records, each
job's state (``raw/<job>/job.json``, written by the launcher at every change), the
parameter snapshots taken at evaluations, controller.csv and metadata.json's
``t0_unix``. So the tables can be rebuilt after the fact, even from a crashed run::

    python -c "from testbed.results.tables import write_tables; write_tables(RUN_DIR)"
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.layout import JOB_STATE, TIER_BYTES, TRAFFIC, RunPaths, records_name, snapshot_path
from testbed.results.flows import write_traffic_tables
from testbed.results.read import read_csv, read_jsonl, run_start

# Column orders are part of the contract (design.md §3, results/README.md).
ITERATION_COLUMNS = (
    "job rank iteration iter_s compute_s comm_s bytes_sent train_loss test_accuracy time_s "
    "param_divergence live_workers compute_set_s"
).split()
MESSAGE_COLUMNS = (
    "job iteration src dst kind bytes fct_s delivered_fraction retransmitted_bytes transport"
).split()
JOB_COLUMNS = (
    "job transport sync model dataset workers servers iterations jct_s startup_s mean_iter_s "
    "final_accuracy status priority_initial priority_final aggregation "
    "fct_mean_s fct_p99_s tta_s iterations_to_target jct_eq1_mean_s jct_eq1_tail_s"
).split()
# Then bytes_<tier>_tier for each tier of the topology (fat-tree: host, edge, core;
# leaf-spine: host, fabric; dumbbell: host, bottleneck), from raw/tiers.json.

__all__ = ["JOB_STATE", "TIER_BYTES", "read_jsonl", "run_start", "write_tables"]  # re-exported


def read_job_states(run_dir: Path) -> list[dict]:
    """Every job's last persisted state, in job order of the spec (as launched)."""
    states = [json.loads(p.read_text()) for p in RunPaths(run_dir).raw.glob(f"*/{JOB_STATE}")]
    order = _spec_order(run_dir)
    return sorted(states, key=lambda s: order.get(s["job"], len(order)))


def _spec_order(run_dir: Path) -> dict[str, int]:
    import yaml  # only to order jobs as the resolved spec lists them

    try:
        spec = yaml.safe_load(RunPaths(run_dir).spec.read_text()) or {}
    except OSError:
        return {}
    return {job["name"]: i for i, job in enumerate(spec.get("jobs", []))}


def _snapshot(path: Path) -> np.ndarray | None:
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError):
        return None


DIVERGENCE_COLUMNS = ["job", "iteration", "rank", "param_divergence", "missing"]


def param_divergence(run_dir: Path, records: list[dict]) -> pd.DataFrame:
    """Per built-in job and evaluated iteration (rank 0 tested its accuracy there):
    max over the workers w that reached the iteration of |θ_w - θ_0| / |θ_0|.

    Every worker that wrote the iteration saved its parameters first. When any of
    those snapshots is missing or unreadable (a killed run, a full disk, a file
    deleted) the iteration gets no figure and `missing` names the workers: a
    comparison of fewer replicas than there are could read 0 while they differ."""
    rows = []
    for (job, it), ranks in sorted(_evaluated(records).items()):
        records_of = str(RunPaths(run_dir).records(job, "worker{}"))  # .format(rank)
        snapshots = {r: _snapshot(snapshot_path(records_of.format(r), it)) for r in ranks}
        missing = [f"worker{r}" for r, v in snapshots.items() if v is None]
        divergence = None
        if not missing:
            base = snapshots[0]
            norm = float(np.linalg.norm(base)) or 1.0
            divergence = max(float(np.linalg.norm(v - base)) for v in snapshots.values()) / norm
        rows.append({"job": job, "iteration": it, "rank": 0, "param_divergence": divergence,
                     "missing": " ".join(missing)})  # fmt: skip
    return pd.DataFrame(rows, columns=DIVERGENCE_COLUMNS)


def _evaluated(records: Iterable[dict]) -> dict[tuple[str, int], set[int]]:
    """(job, iteration rank 0 evaluated) -> the ranks that wrote that iteration, for
    built-in jobs (their workers write `ready`; a command job snapshots nothing)."""
    builtin = {r["job"] for r in records if r["type"] == "ready"}
    its = [r for r in records if r["type"] == "iteration" and r["job"] in builtin]
    evaluated = {
        (r["job"], r["iteration"]): {0}
        for r in its
        if r["rank"] == 0 and r.get("test_accuracy") is not None
    }
    for r in its:
        if (r["job"], r["iteration"]) in evaluated:
            evaluated[r["job"], r["iteration"]].add(r["rank"])
    return evaluated


def snapshot_gaps(divergence: pd.DataFrame) -> list[str]:
    """'job iteration N (worker2)' for each evaluation whose replicas were not all
    compared (`param_divergence`)."""
    gaps = divergence[divergence["missing"].astype(object).fillna("") != ""]
    return [f"{r.job} iteration {r.iteration} ({r.missing})" for r in gaps.itertuples()]


def read_records(run_dir: Path) -> list[dict]:
    """Every JSONL record of the jobs (raw/traffic/ holds the traffic's own)."""
    records = []
    for path in sorted(RunPaths(run_dir).raw.rglob(records_name("*"))):
        if path.parent.name != TRAFFIC:
            records += read_jsonl(path)
    return records


def iterations_table(
    records: Iterable[dict], t0: float, divergence: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per worker per iteration; `time_s` is seconds since the run started;
    `param_divergence` on rank 0's rows at evaluations (from the snapshots). A command
    job's own metric keys follow as columns of their own (empty on other jobs' rows)."""
    rows = [r for r in records if r["type"] == "iteration"]
    columns = [c for c in ITERATION_COLUMNS if c not in ("param_divergence", "live_workers")]
    known = {*ITERATION_COLUMNS, "type", "time"}
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in known))
    df = pd.DataFrame(rows, columns=[*columns, "time", *extra])
    df["time_s"] = df["time"] - t0
    if divergence is None:
        divergence = pd.DataFrame(columns=DIVERGENCE_COLUMNS)
    keys = ["job", "iteration", "rank"]
    divergence = divergence[[*keys, "param_divergence"]].astype(
        {"iteration": "int64", "rank": "int64"}
    )
    df = df.merge(divergence, on=keys, how="left")
    df = df.merge(live_workers(records), on=["job", "iteration"], how="left")
    ordered = df[[*ITERATION_COLUMNS, *extra]]
    return ordered.sort_values(["job", "iteration", "rank"], ignore_index=True)


def live_workers(records: Iterable[dict]) -> pd.DataFrame:
    """Per job and iteration, the workers its servers still waited for (jobs with
    on_failure: continue; the fewest over the job's servers)."""
    steps = pd.DataFrame(
        [r for r in records if r["type"] == "step"], columns=["job", "iteration", "live_workers"]
    )
    return (
        steps.groupby(["job", "iteration"], as_index=False)["live_workers"]
        .min()
        .astype({"iteration": "int64"})
    )


def messages_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per message received, at its receiver."""
    rows = [r for r in records if r["type"] == "message"]
    df = pd.DataFrame(rows, columns=MESSAGE_COLUMNS)
    return df.sort_values(["job", "iteration", "kind", "src", "dst"], ignore_index=True)


def _tier_bytes(run_dir: Path) -> dict | None:
    path = RunPaths(run_dir).tier_bytes
    return json.loads(path.read_text()) if path.exists() else None


def jobs_table(
    records: list[dict],
    jobs: list[dict],
    classes: pd.DataFrame | None = None,
    tiers: dict | None = None,
) -> pd.DataFrame:
    """One row per job: `jobs` gives spec fields and status; records give timings;
    `classes` (controller.csv) the job's first and last priority class; `tiers`
    (raw/tiers.json) the bytes its packets put on each tier, from the switches'
    per-job counters.

    jct_s runs from the first worker starting to train to the last worker finishing
    its last iteration; startup_s from launch to that first start. A command job's
    jct_s (launch to its last rank's exit) comes with its state, and its iterations
    and mean_iter_s from whatever its script reported.
    """
    rows = []
    for job in jobs:
        mine = [r for r in records if r.get("job") == job["job"]]
        its = [r for r in mine if r["type"] == "iteration"]
        ready = [r["time"] for r in mine if r["type"] == "ready"]
        accs = [r for r in its if r.get("test_accuracy") is not None]
        row = dict(job)
        row["iterations"] = 1 + max((r["iteration"] for r in its), default=-1)
        if job.get("model") != "command":
            row["jct_s"] = max(r["time"] for r in its) - min(ready) if its and ready else None
        row["startup_s"] = (
            min(ready) - job["launched_at"] if ready and job.get("launched_at") else None
        )
        times = [r["iter_s"] for r in its if isinstance(r.get("iter_s"), (int, float))]
        row["mean_iter_s"] = sum(times) / len(times) if times else None
        row["final_accuracy"] = (
            max(accs, key=lambda r: r["iteration"])["test_accuracy"] if accs else None
        )
        row.update(fct_columns(mine, row["iterations"], job))
        row.update(target_columns(accs, min(ready) if ready else None, job))
        changes = classes[classes["job"] == job["job"]] if classes is not None else []
        row["priority_initial"] = int(changes["class"].iloc[0]) if len(changes) else None
        row["priority_final"] = int(changes["class"].iloc[-1]) if len(changes) else None
        counted = (tiers or {}).get("jobs", {}).get(job["job"], {})
        for tier in (tiers or {}).get("tiers", []):
            row[f"bytes_{tier}_tier"] = counted.get(tier)
        rows.append(row)
    by_tier = [f"bytes_{t}_tier" for t in (tiers or {}).get("tiers", [])]
    extra = [
        c
        for c in (rows[0] if rows else {})
        if c not in JOB_COLUMNS and c not in by_tier and c != "launched_at"
    ]
    return pd.DataFrame(rows, columns=JOB_COLUMNS + by_tier + extra)


def fct_columns(records: list[dict], iterations: int, job: dict) -> dict:
    """A job's message FCT mean and p99 (messages.csv), and APNet's eq. 1 JCT from them:
    iterations x (compute + 2 x network time), the network time being one message's FCT
    (mean, or p99 for the tail) times the messages one phase sends in a row: 1 for a
    parameter server without aggregation (push, then pull), W - 1 for ring allreduce
    (reduce-scatter, then all-gather). Empty where eq. 1 does not describe the job
    (aggregation trees, gloo) or it has no messages."""
    fcts = [r["fct_s"] for r in records if r["type"] == "message" and r["kind"] != "agree"]
    computes = [
        r["compute_s"]
        for r in records
        if r["type"] == "iteration" and isinstance(r.get("compute_s"), (int, float))
    ]
    out = dict.fromkeys(("fct_mean_s", "fct_p99_s", "jct_eq1_mean_s", "jct_eq1_tail_s"))
    if not fcts:
        return out
    out["fct_mean_s"], out["fct_p99_s"] = float(np.mean(fcts)), float(np.percentile(fcts, 99))
    in_a_row = {"ps": 1, "allreduce": int(job.get("workers") or 1) - 1}.get(job.get("sync"))
    if not computes or not in_a_row or job.get("aggregation", "none") != "none":
        return out
    compute = float(np.mean(computes))
    for key, fct in (("jct_eq1_mean_s", out["fct_mean_s"]), ("jct_eq1_tail_s", out["fct_p99_s"])):
        out[key] = iterations * (compute + 2 * in_a_row * fct)
    return out


def target_columns(evaluated: list[dict], ready: float | None, job: dict) -> dict:
    """Time (from the first worker starting to train) and iterations until a test
    accuracy first reached the job's `target_accuracy`; empty if it never did."""
    target = job.get("target_accuracy")
    hits = [r for r in evaluated if target is not None and r["test_accuracy"] >= target]
    if not hits or ready is None:
        return {"tta_s": None, "iterations_to_target": None}
    first = min(hits, key=lambda r: (r["iteration"], r["time"]))
    return {"tta_s": first["time"] - ready, "iterations_to_target": first["iteration"] + 1}


LINK_BYTES_COLUMNS = ["link", "tier", "direction", "src", "dst", "bytes", "packets"]


def link_bytes_table(links: pd.DataFrame | None) -> pd.DataFrame:
    """link_bytes.csv: what each link direction carried while links.csv sampled it
    (its last sample's counters less its first), one row per direction."""
    if links is None or links.empty:
        return pd.DataFrame(columns=LINK_BYTES_COLUMNS)
    grouped = links.sort_values("time_s").groupby("direction", sort=False)
    first, last = grouped.first(), grouped.last()
    out = last[["link", "tier", "src", "dst"]].copy()
    out["bytes"] = last["tx_bytes"] - first["tx_bytes"]
    out["packets"] = last["tx_packets"] - first["tx_packets"]
    return out.reset_index()[LINK_BYTES_COLUMNS].sort_values(["tier", "link", "direction"])


def write_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Write iterations.csv, messages.csv, jobs.csv and link_bytes.csv (and with
    background traffic, flows.csv and traffic.csv) from `run_dir` alone; return them, and under
    ``param_divergence`` (not a CSV of its own) the replica comparisons, with the
    evaluations that could not compare every replica."""
    records = read_records(run_dir)
    paths = RunPaths(run_dir)
    events = paths.table("controller")
    classes = pd.read_csv(events) if events.exists() else None
    divergence = param_divergence(run_dir, records)
    frames = {
        "iterations": iterations_table(records, run_start(run_dir), divergence),
        "messages": messages_table(records),
        "jobs": jobs_table(records, read_job_states(run_dir), classes, _tier_bytes(run_dir)),
        "link_bytes": link_bytes_table(read_csv(paths.table("links"))),
    }
    for name, frame in frames.items():
        frame.to_csv(paths.table(name), index=False)

    frames.update(write_traffic_tables(run_dir))
    frames["param_divergence"] = divergence
    return frames
