"""Tidy CSVs built from the per-process JSONL records of a run directory.

Only the run directory is read, so the tables can be rebuilt after the fact
(``testbed.results.tables.write_tables(run_dir, ...)``) even from a crashed run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# Column orders are part of the contract (design.md §3, results/README.md).
ITERATION_COLUMNS = (
    "job rank iteration iter_s compute_s comm_s bytes_sent train_loss test_accuracy time_s"
).split()
MESSAGE_COLUMNS = (
    "job iteration src dst kind bytes fct_s delivered_fraction retransmitted_bytes transport"
).split()
JOB_COLUMNS = (
    "job transport sync model dataset workers servers iterations jct_s startup_s mean_iter_s "
    "final_accuracy status priority_initial priority_final"
).split()


def read_records(run_dir: Path) -> list[dict]:
    """Every JSONL record of the run, tolerating a half-written last line."""
    records = []
    for path in sorted((run_dir / "raw").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a process killed mid-write leaves a partial last line
    return records


def iterations_table(records: Iterable[dict], t0: float) -> pd.DataFrame:
    """One row per worker per iteration; `time_s` is seconds since the run started."""
    rows = [r for r in records if r["type"] == "iteration"]
    df = pd.DataFrame(rows, columns=[*ITERATION_COLUMNS, "time"])
    df["time_s"] = df["time"] - t0
    return df[ITERATION_COLUMNS].sort_values(["job", "iteration", "rank"], ignore_index=True)


def messages_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per message received, at its receiver."""
    rows = [r for r in records if r["type"] == "message"]
    df = pd.DataFrame(rows, columns=MESSAGE_COLUMNS)
    return df.sort_values(["job", "iteration", "kind", "src", "dst"], ignore_index=True)


def jobs_table(
    records: list[dict], jobs: list[dict], classes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per job: `jobs` gives spec fields and status; records give timings;
    `classes` (controller.csv) the job's first and last priority class.

    jct_s runs from the first worker starting to train to the last worker finishing
    its last iteration; startup_s from launch to that first start.
    """
    rows = []
    for job in jobs:
        mine = [r for r in records if r.get("job") == job["job"]]
        its = [r for r in mine if r["type"] == "iteration"]
        ready = [r["time"] for r in mine if r["type"] == "ready"]
        accs = [r for r in its if r.get("test_accuracy") is not None]
        row = dict(job)
        row["iterations"] = 1 + max((r["iteration"] for r in its), default=-1)
        row["jct_s"] = max(r["time"] for r in its) - min(ready) if its and ready else None
        row["startup_s"] = (
            min(ready) - job["launched_at"] if ready and job.get("launched_at") else None
        )
        row["mean_iter_s"] = sum(r["iter_s"] for r in its) / len(its) if its else None
        row["final_accuracy"] = (
            max(accs, key=lambda r: r["iteration"])["test_accuracy"] if accs else None
        )
        changes = classes[classes["job"] == job["job"]] if classes is not None else []
        row["priority_initial"] = int(changes["class"].iloc[0]) if len(changes) else None
        row["priority_final"] = int(changes["class"].iloc[-1]) if len(changes) else None
        rows.append(row)
    extra = [c for c in (rows[0] if rows else {}) if c not in JOB_COLUMNS and c != "launched_at"]
    return pd.DataFrame(rows, columns=JOB_COLUMNS + extra)


def write_tables(run_dir: Path, jobs: list[dict], t0: float) -> dict[str, pd.DataFrame]:
    """Write iterations.csv, messages.csv and jobs.csv; return the frames."""
    records = read_records(run_dir)
    events = run_dir / "controller.csv"
    classes = pd.read_csv(events) if events.exists() else None
    frames = {
        "iterations": iterations_table(records, t0),
        "messages": messages_table(records),
        "jobs": jobs_table(records, jobs, classes),
    }
    for name, frame in frames.items():
        frame.to_csv(run_dir / f"{name}.csv", index=False)
    return frames
