"""`testbed report --compare DIR...`: several runs overlaid, each job labelled with its
run directory's name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from testbed.layout import RunPaths
from testbed.report.run import (
    JOB_SUMMARY,
    accuracy,
    figures_markdown,
    iteration_time,
    table,
)
from testbed.results.read import read_csv


def _name(directory: Path) -> str:
    """A run's label: its directory and the parent's (studies name runs p000-r0)."""
    return f"{directory.parent.name}/{directory.name}"


def _stacked(directories: list[Path], csv: str) -> pd.DataFrame:
    """One table (by name) of every run, its `job` column prefixed with the run's label."""
    frames = []
    for directory in directories:
        frame = read_csv(RunPaths(directory).table(csv))
        if frame is not None and len(frame):
            frames.append(frame.assign(job=_name(directory) + ": " + frame["job"].astype(str)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compare_plots(directories: list[Path], out: Path) -> list[tuple[str, Path]]:
    """Iteration time and accuracy of every job of every run, on shared axes."""
    its = _stacked(directories, "iterations")
    plots = []
    if len(its):
        plots.append(("Iteration time", iteration_time(its, out)))
        evals = its.dropna(subset=["test_accuracy"])
        if len(evals):
            plots.append(("Test accuracy", accuracy(evals, out)))
    return plots


def compare_markdown(directories: list[Path], plots: list[tuple[str, Path]]) -> str:
    """report.md of a comparison: the runs, their jobs side by side, the plots."""
    lines = ["# Comparison", "", *[f"- `{d}`" for d in directories], ""]
    jobs = _stacked(directories, "jobs")
    if len(jobs):
        lines += ["## Jobs", "", table(jobs[[c for c in JOB_SUMMARY if c in jobs]]), ""]
    lines += figures_markdown(plots)
    return "\n".join(lines) + "\n"
