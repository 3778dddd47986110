"""runs.csv and summary.csv of a study, from its run directories alone.

runs.csv: one row per run and job: the run's name, point, repeat, seed and status,
one column per swept key (mappings in YAML flow style), then every jobs.csv column,
then ``p50_iter_s`` and ``p99_iter_s`` (over every worker's iterations, as
``mean_iter_s`` is).

summary.csv: one row per point, job and metric, over the runs whose job ended ``ok``:
``n``, ``mean``, ``std`` (sample, ddof 1), and the 95% confidence interval of the mean
from the t-distribution with n-1 degrees of freedom (``ci95_low``, ``ci95_high``;
empty for n < 2). ``n_not_ok`` counts the runs left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from testbed.results.rundir import read_csv, read_json
from testbed.spec.study import Study, label

RUN_KEYS = ["run", "point", "repeat", "seed", "run_status"]
# Columns of jobs.csv that the spec sets, or that name things: not metrics.
NOT_METRICS = {"point", "repeat", "seed", "workers", "servers", "start_s", "launched_at"}


def run_status(run_dir: Path) -> str:
    """A run's status from its metadata.json: missing if it never started."""
    return read_json(run_dir / "metadata.json").get("status", "missing")


def runs_table(study: Study, study_dir: Path) -> pd.DataFrame:
    """runs.csv (see the module docstring)."""
    frames = []
    for run in study.runs:
        run_dir = study_dir / run.name
        head = {"run": run.name, "point": run.point, "repeat": run.repeat, "seed": run.seed,
                "run_status": run_status(run_dir)}  # fmt: skip
        head.update({key: label(value) for key, value in run.values.items()})
        jobs = read_csv(run_dir / "jobs.csv")
        if jobs is None or jobs.empty:
            frames.append(pd.DataFrame([head]))
            continue
        jobs = jobs.merge(_tail(run_dir), on="job", how="left")
        frames.append(pd.concat([pd.DataFrame([head] * len(jobs)), jobs], axis=1))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_KEYS)


def summary_table(runs: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """summary.csv (see the module docstring)."""
    if "job" not in runs:
        return pd.DataFrame()
    metrics = [
        c
        for c in runs.columns
        if c not in NOT_METRICS and c not in swept and pd.api.types.is_numeric_dtype(runs[c])
    ]
    rows = []
    for (point, job), group in runs.dropna(subset=["job"]).groupby(["point", "job"], sort=True):
        ok = group[group["status"] == "ok"]
        first = group.iloc[0]
        for metric in metrics:
            values = ok[metric].dropna().to_numpy(dtype=float)
            rows.append({"point": point, **{k: first[k] for k in swept}, "job": job,
                         "metric": metric, **ci95(values),
                         "n_not_ok": len(group) - len(ok)})  # fmt: skip
    return pd.DataFrame(rows)


def ci95(values: np.ndarray) -> dict[str, float]:
    """n, mean, sample std and the t-based 95% confidence interval of the mean."""
    n = len(values)
    mean = float(values.mean()) if n else np.nan
    std = float(values.std(ddof=1)) if n > 1 else np.nan
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n) if n > 1 else np.nan
    return {"n": n, "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def write_study_tables(study: Study, study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write runs.csv and summary.csv into `study_dir`; return them."""
    runs = runs_table(study, study_dir)
    summary = summary_table(runs, study.swept)
    runs.to_csv(study_dir / "runs.csv", index=False)
    summary.to_csv(study_dir / "summary.csv", index=False)
    return runs, summary


def _tail(run_dir: Path) -> pd.DataFrame:
    """p50 and p99 of iter_s per job, over every worker's iterations."""
    its = read_csv(run_dir / "iterations.csv")
    if its is None or its.empty:
        return pd.DataFrame(columns=["job", "p50_iter_s", "p99_iter_s"])
    grouped = its.groupby("job")["iter_s"]
    return pd.DataFrame(
        {"p50_iter_s": grouped.quantile(0.5), "p99_iter_s": grouped.quantile(0.99)}
    ).reset_index()
