"""The report of a study directory: each metric against each swept key, with 95%
confidence intervals, one line per value of the other swept keys (and per job), from
summary.csv, runs.csv and study.yaml alone."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from testbed.layout import StudyPaths
from testbed.report.figures import (
    axis_label,
    distribution_axis,
    figure,
    legend,
    legend_below,
    save,
    step_cdf,
)
from testbed.report.run import figures_markdown, table
from testbed.results.read import read_csv
from testbed.study.against import arm, arm_distributions, in_arm
from testbed.study.tables import ci95, counted

# The background flows' median FCT only where a run has them (testbed.study.tables).
METRICS = ["mean_iter_s", "p99_iter_s", "jct_s", "final_accuracy", "flows_fct_p50_s"]
UNTRUSTED = " †"


def study_plots(
    study_dir: Path, axes: list[list[str]], summary: pd.DataFrame
) -> list[tuple[str, Path]]:
    """One plot per (metric, axis) that has data. An axis is a swept key, or the keys of
    a zip group, which vary together: drawn against its first key, and named by it in
    the other axes' legends."""
    plots = []
    for metric in METRICS:
        rows = summary[summary["metric"] == metric]
        if rows["mean"].notna().any():
            for axis in axes:
                path = metric_against(rows, axis[0], _others(axes, axis), study_dir)
                plots.append((f"{axis_label(metric)} against {axis[0]}", path))
    return plots


def _others(axes: list[list[str]], axis: list[str]) -> list[str]:
    """The first key of every axis but `axis`: one legend entry per other axis."""
    return [other[0] for other in axes if other is not axis]


def metric_against(rows: pd.DataFrame, key: str, others: list[str], into: Path) -> Path:
    """`rows` (one metric of summary.csv) against swept `key`, with 95% CI error bars;
    one line per job and value of the `others`."""
    metric = rows["metric"].iloc[0]
    categories = _categories(rows[key])
    fig, (ax,) = figure(1, width=7.5)
    lines = 0
    # A line per job only where runs have several: a study of one job whose name is
    # swept (one per model) would otherwise draw each point as a line of its own.
    several = rows.groupby("point")["job"].nunique().max() > 1 if "point" in rows else True
    by = ["job", *others] if several else ["job_", *others]
    groups = rows.assign(job_="").groupby(by, sort=False, dropna=False)
    jobs = rows["job"].nunique() if several else 1
    for n, (labels, line) in enumerate(groups):
        line = line.assign(x=line[key].map(categories)).sort_values("x")
        low = (line["mean"] - line["ci95_low"]).fillna(0)
        high = (line["ci95_high"] - line["mean"]).fillna(0)
        # Lines of a categorical axis are nudged apart so that their error bars do not hide
        # one another.
        nudge = 0.0 if _numeric(rows[key]) else 0.06 * (n - (groups.ngroups - 1) / 2)
        ax.errorbar(line["x"] + nudge, line["mean"], yerr=[low, high], marker="o", capsize=3,
                    label=_legend(jobs, labels, others))  # fmt: skip
        lines += 1
    if not _numeric(rows[key]):
        ax.set_xticks(list(categories.values()), list(categories), rotation=15, fontsize="small")
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set(xlabel=axis_label(key), ylabel=axis_label(metric))
    # Left-aligned: with the legend outside, a centred title can run off the figure.
    title = f"{axis_label(metric).split(' (')[0]} against {key.split('.')[-1]} (mean, 95% CI)"
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    legend(ax, lines if lines > 1 else 0)
    return save(fig, into, f"{_slug(metric)}-vs-{_slug(key)}")


def _numeric(values: pd.Series) -> bool:
    return pd.to_numeric(values, errors="coerce").notna().all()


def _categories(values: pd.Series) -> dict:
    """value -> x position: the value itself when numeric, else its index in order."""
    if _numeric(values):
        return {v: float(v) for v in values.unique()}
    return {v: float(i) for i, v in enumerate(dict.fromkeys(values))}


def _legend(jobs: int, labels: tuple, others: list[str]) -> str:
    job, *values = labels
    parts = [f"{k.split('.')[-1]}={v}" for k, v in zip(others, values)]
    return ", ".join(([str(job)] if jobs > 1 else []) + parts) or str(job)


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "-", key.lower()).strip("-")


def study_markdown(
    study_dir: Path,
    swept: list[str],
    plots: list[tuple[str, Path]],
    summary: pd.DataFrame | None,
    include_untrustworthy: bool = False,
) -> str:
    """report.md of a study: what was swept, run statuses, the summary, the runs left
    out of it and why, the plots."""
    runs = read_csv(StudyPaths(study_dir).table("runs"))
    recorded = yaml.safe_load(StudyPaths(study_dir).spec.read_text())
    lines = [f"# Study {recorded['spec'].get('name', '')}: {study_dir.name}", "",
             f"- spec: `{recorded['source']}`",
             f"- swept: {', '.join(f'`{k}`' for k in swept) or 'nothing (repeats only)'}",
             f"- repeats per point: {recorded['spec'].get('repeats', 1)}"]  # fmt: skip
    if runs is not None:
        counts = runs.drop_duplicates("run")["run_status"].value_counts()
        lines.append("- runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    lines.append("")
    if summary is not None and len(summary):
        over = "that ended ok" + ("" if include_untrustworthy else " and were trustworthy")
        lines += [f"## Summary (mean and 95% CI over the runs {over})", ""]
        if include_untrustworthy:
            lines += [f"{UNTRUSTED} marks a figure that includes untrustworthy runs "
                      "(`--include-untrustworthy`).", ""]  # fmt: skip
        lines += [table(_wide(summary, swept, include_untrustworthy)), ""]
    lines += left_out_markdown(runs, include_untrustworthy)
    lines += figures_markdown(plots)
    return "\n".join(lines) + "\n"


def left_out_markdown(runs: pd.DataFrame | None, include_untrustworthy: bool) -> list[str]:
    """A section naming each run (and job) the summary leaves out, and why."""
    if runs is None or "left_out" not in runs:
        return []
    out = runs[runs["left_out"].astype(object).fillna("") != ""]
    if include_untrustworthy:
        out = out[~out["left_out"].str.startswith("untrustworthy")]
    if out.empty:
        return []
    rows = out[[c for c in ("run", "job", "left_out") if c in out]].rename(
        columns={"left_out": "why"}
    )
    return ["## Runs left out of the summary", "", table(rows), ""]


def _wide(
    summary: pd.DataFrame, swept: list[str], include_untrustworthy: bool = False
) -> pd.DataFrame:
    """One row per point and job, one 'mean [low, high] (n)' column per metric."""
    rows = summary[summary["metric"].isin(METRICS)].copy()
    untrusted = rows.get("n_untrustworthy", pd.Series(0, index=rows.index)).fillna(0)
    marks = [UNTRUSTED if include_untrustworthy and n else "" for n in untrusted]
    rows["cell"] = [
        (f"{m:.4g} [{lo:.4g}, {hi:.4g}] (n={n})" if np.isfinite(lo) else f"{m:.4g} (n={n})") + mark
        for m, lo, hi, n, mark in zip(
            rows["mean"], rows["ci95_low"], rows["ci95_high"], rows["n"], marks
        )
    ]
    wide = rows.pivot_table(index=["point", *swept, "job"], columns="metric", values="cell",
                            aggfunc="first", sort=False)  # fmt: skip
    wide = wide[[m for m in METRICS if m in wide]].reset_index()
    return wide.rename(columns={k: k.split(".")[-1] for k in swept})


def relative_summary(runs: pd.DataFrame, swept: list[str], relative_to: dict) -> pd.DataFrame:
    """summary.csv's shape for each metric as a ratio to the `relative_to` arm: within
    each repeat and job, a run's value over the baseline run's at the same other swept
    values (a paired ratio), then mean and 95% CI over repeats (usable runs only)."""
    usable = runs[counted(runs)]
    metrics = [m for m in METRICS if m in usable]
    on = [k for k in swept if k not in relative_to] + ["repeat", "job"]
    base = arm(runs, relative_to)[on + metrics]
    paired = usable.merge(base, on=on, suffixes=("", "_base"))
    rows = []
    for (point, job), group in paired.groupby(["point", "job"], sort=True):
        first = group.iloc[0]
        for metric in metrics:
            ratios = (group[metric] / group[f"{metric}_base"]).dropna().to_numpy(dtype=float)
            rows.append({"point": point, **{k: first[k] for k in swept}, "job": job,
                         "metric": metric, **ci95(ratios)})  # fmt: skip
    return pd.DataFrame(rows)


def relative_plots(
    relative: pd.DataFrame, axes: list[list[str]], relative_to: dict, study_dir: Path
) -> list[tuple[str, Path]]:
    """Each metric's ratio to the baseline arm against each axis not fixed by it (axes
    as for `study_plots`)."""
    base = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in relative_to.items())
    plots = []
    for metric in METRICS:
        rows = relative[relative["metric"] == metric]
        # The baseline arm over itself is 1 by construction: not drawn.
        rows = rows[~in_arm(rows, relative_to)]
        if not rows["mean"].notna().any():
            continue
        rows = rows.assign(metric=f"{metric} / baseline")
        for axis in (a for a in axes if not set(a) & set(relative_to)):
            path = metric_against(rows, axis[0], _others(axes, axis), study_dir)
            plots.append((f"{axis_label(metric)} over the arm {base}, against {axis[0]}", path))
    return plots


def cdf_plots(
    runs: pd.DataFrame, swept: list[str], cdfs, study_dir: Path
) -> list[tuple[str, Path]]:
    """One CDF per distribution asked for (`report.cdf`), one line per arm, pooled over
    the arm's usable runs."""
    plots = []
    for metric in cdfs:
        arms = arm_distributions(metric, runs, swept, study_dir)
        unit, scale = distribution_axis(metric)
        fig, (ax,) = figure(1, width=7.5, height=4.2 + 0.2 * len(arms))
        for name, values in arms.items():
            step_cdf(ax, values, scale, label=name)
        kind = metric.split(".")[0]
        ax.set(xlabel=unit, ylabel=f"fraction of {kind}", title=f"CDF of {metric} per arm")
        ax.grid(alpha=0.3)
        rect = legend_below(fig)
        path = save(fig, study_dir, f"cdf-{_slug(metric)}", rect=rect)
        plots.append((f"CDF of {metric}, per arm", path))
    return plots
