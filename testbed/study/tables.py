"""runs.csv and summary.csv of a study, from its run directories alone.

runs.csv: one row per run and job: the run's name, point, repeat, seed, status and
fidelity verdict (``trustworthy``, and ``left_out``: why the summary leaves the row
out, empty when it counts), one column per swept key (mappings in YAML flow style),
then every jobs.csv column, then ``p50_iter_s`` and ``p99_iter_s`` (over every
worker's iterations, as ``mean_iter_s`` is), then, for a run with one ``flows`` entry
of background traffic, what the jobs cost their neighbours: ``flows_fct_p50_s``,
``flows_fct_p99_s`` and ``flows_completed`` from its traffic.csv (the run's, on every
job's row).

summary.csv: one row per point, job and metric, over the runs that ended ``ok`` (the
run and the job) *and* that their fidelity verdict trusts (`testbed.results.verdict`):
``n``, ``mean``, ``std`` (sample, ddof 1), and the 95% confidence interval of the mean
from the t-distribution with n-1 degrees of freedom (``ci95_low``, ``ci95_high``;
empty for n < 2). ``n_not_ok`` counts the runs left out for their status,
``n_untrustworthy`` the ok ones left out for their verdict. With
``include_untrustworthy`` those are counted too (``testbed report
--include-untrustworthy``), and ``n_untrustworthy`` says how many of ``n`` they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from testbed.layout import RunPaths, StudyPaths
from testbed.results.read import read_csv
from testbed.results.verdict import read_verdict
from testbed.spec.study import Study, label

RUN_KEYS = ["run", "point", "repeat", "seed", "run_status", "trustworthy", "left_out"]
# Columns of jobs.csv that the spec sets, or that name things: not metrics.
NOT_METRICS = {"point", "repeat", "seed", "workers", "servers", "start_s", "launched_at",
               "trustworthy"}  # fmt: skip


def run_status(run_dir: Path) -> str:
    """A run's status from its metadata.json: missing if it never started."""
    return read_verdict(run_dir).status


def runs_table(study: Study, study_dir: Path) -> pd.DataFrame:
    """runs.csv (see the module docstring)."""
    frames = []
    for run in study.runs:
        run_dir = study_dir / run.name
        verdict = read_verdict(run_dir)
        head = {"run": run.name, "point": run.point, "repeat": run.repeat, "seed": run.seed,
                "run_status": verdict.status, "trustworthy": verdict.trustworthy,
                "left_out": verdict.why_not()}  # fmt: skip
        head.update({key: label(value) for key, value in run.values.items()})
        jobs = read_csv(RunPaths(run_dir).table("jobs"))
        if jobs is None or jobs.empty:
            frames.append(pd.DataFrame([head]))
            continue
        jobs = jobs.merge(_tail(run_dir), on="job", how="left").assign(**_background(run_dir))
        heads = [
            {**head, "left_out": head["left_out"] or f"job {status}"} if status != "ok" else head
            for status in jobs["status"]
        ]
        frames.append(pd.concat([pd.DataFrame(heads), jobs], axis=1))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_KEYS)


def ended_ok(runs: pd.DataFrame) -> pd.Series:
    """Rows of runs.csv whose run and job both ended ok."""
    return (runs["run_status"] == "ok") & (runs["status"] == "ok")


def trusted(runs: pd.DataFrame) -> pd.Series:
    """Rows of runs.csv whose run the fidelity verdict trusts."""
    return runs["trustworthy"].map(lambda v: v is True or v == "True").astype(bool)


def counted(runs: pd.DataFrame, include_untrustworthy: bool = False) -> pd.Series:
    """Rows of runs.csv that enter statistics: ended ok and trusted (or, with
    `include_untrustworthy`, ended ok)."""
    return ended_ok(runs) & (trusted(runs) | include_untrustworthy)


def summary_table(
    runs: pd.DataFrame, swept: list[str], include_untrustworthy: bool = False
) -> pd.DataFrame:
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
        used = group[counted(group, include_untrustworthy)]
        first = group.iloc[0]
        n_not_ok = int((~ended_ok(group)).sum())
        n_untrustworthy = int((ended_ok(group) & ~trusted(group)).sum())
        for metric in metrics:
            values = used[metric].dropna().to_numpy(dtype=float)
            rows.append({"point": point, **{k: first[k] for k in swept}, "job": job,
                         "metric": metric, **ci95(values), "n_not_ok": n_not_ok,
                         "n_untrustworthy": n_untrustworthy})  # fmt: skip
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
    runs.to_csv(StudyPaths(study_dir).table("runs"), index=False)
    summary.to_csv(StudyPaths(study_dir).table("summary"), index=False)
    return runs, summary


def _tail(run_dir: Path) -> pd.DataFrame:
    """p50 and p99 of iter_s per job, over every worker's iterations."""
    its = read_csv(RunPaths(run_dir).table("iterations"))
    if its is None or its.empty:
        return pd.DataFrame(columns=["job", "p50_iter_s", "p99_iter_s"])
    grouped = its.groupby("job")["iter_s"]
    return pd.DataFrame(
        {"p50_iter_s": grouped.quantile(0.5), "p99_iter_s": grouped.quantile(0.99)}
    ).reset_index()


def _background(run_dir: Path) -> dict[str, float]:
    """The run's background flows, from traffic.csv's one `flows` entry: their FCT
    median and p99 and how many completed. Empty with none, or several (their FCTs are
    summarised per entry, and a median of medians is no median)."""
    traffic = read_csv(RunPaths(run_dir).table("traffic"))
    if traffic is None or "kind" not in traffic:
        return {}
    flows = traffic[traffic["kind"] == "flows"]
    if len(flows) != 1:
        return {}
    row = flows.iloc[0]
    return {"flows_fct_p50_s": row["fct_p50_s"], "flows_fct_p99_s": row["fct_p99_s"],
            "flows_completed": row["completed"]}  # fmt: skip
