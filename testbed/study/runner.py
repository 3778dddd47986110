"""Run every point of a study in order, each into its own run directory.

The study directory::

    study.yaml    the spec and its expansion (run names, points, seeds, swept values)
    runs.csv      one row per run and job        } rewritten after every run, so an
    summary.csv   mean, std, n, 95% CI per point } interrupted study keeps its tables
    p000-r0/ ...  one run directory per run (results/README.md)
    attempts/     run directories of failed or interrupted attempts that --resume replaced

A run that fails is recorded as failed and the study goes on. Ctrl-C (or SIGTERM)
stops the run under way (it tears itself down and keeps its partial results), writes
the tables, and stops the study; ``testbed run --resume DIR`` then runs only the runs
that are missing or not ``ok`` (``--retry-untrustworthy``: and those ``ok`` but not
trusted by their fidelity verdict).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from testbed.errors import TestbedError
from testbed.layout import STUDY_SPEC, StudyPaths
from testbed.results.rundir import hand_over, make_dirs, refuse_non_empty, utc_stamp
from testbed.results.verdict import read_verdict
from testbed.runner import interrupt_pending, quiet, run_experiment
from testbed.spec.study import Study, expand, label
from testbed.study.tables import run_status, write_study_tables


@dataclass
class StudyResult:
    study_dir: Path
    status: str  # ok: every run ok | failed: some run not ok | interrupted
    runs: pd.DataFrame
    summary: pd.DataFrame


def create_study_dir(name: str, out: str | Path | None, root: str | Path = "results") -> Path:
    """A fresh study directory: `out` (absent or empty), or results/<name>/study-<UTC>."""
    path = Path(out) if out else Path(root) / name / f"study-{utc_stamp()}"
    refuse_non_empty(path, "studies")
    make_dirs(path, "study directory")
    return path


def load_resumable(study_dir: Path) -> Study:
    """The study recorded in `study_dir`/study.yaml, expanded again (and checked to be
    the same runs)."""
    path = StudyPaths(study_dir).spec
    try:
        recorded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TestbedError(f"--resume {study_dir}: cannot read {STUDY_SPEC} ({exc})") from None
    spec = recorded["spec"]
    if StudyPaths(study_dir).reference.exists():  # the study's own copy, wherever it moved
        spec["report"] = {
            **spec["report"],
            "reference": str(StudyPaths(study_dir).reference.resolve()),
        }
    study = expand(spec, str(path))
    if [r.name for r in study.runs] != [r["name"] for r in recorded["runs"]]:
        raise TestbedError(f"{path}: its spec no longer expands to the runs it lists")
    return Study(recorded["source"], study.base, study.keys, study.runs, study.reference)


def run_study(
    study: Study, study_dir: Path, console: Console | None = None, retry_untrustworthy: bool = False
) -> StudyResult:
    """Run every run of `study` not yet ``ok`` in `study_dir` (all of them, the first
    time), and with `retry_untrustworthy` the ok ones whose fidelity verdict does not
    trust them (e.g. a CPU another program saturated); return the study's tables. A
    replaced attempt is kept under attempts/."""
    console = console or Console(stderr=True)
    StudyPaths(study_dir).spec.write_text(study.as_yaml())
    copy = StudyPaths(study_dir).reference
    if study.reference and study.reference.resolve() != copy.resolve():
        shutil.copyfile(study.reference, copy)  # the report reads it there
    todo = [r for r in study.runs if _to_run(study_dir / r.name, retry_untrustworthy)]
    done = len(study.runs) - len(todo)
    status = "ok"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(study_dir.name, total=len(study.runs), completed=done)
        try:
            for run in todo:
                result = _run_one(run, study, study_dir, bar, task)
                if result == "interrupted" or interrupt_pending():  # Ctrl-C during teardown
                    status = "interrupted"
                    break
                if result != "ok":
                    status = "failed"
        except KeyboardInterrupt:  # between runs
            status = "interrupted"
    runs, summary = write_study_tables(study, study_dir)
    hand_over(study_dir)  # its run directories were handed over as each ended
    if status == "ok" and (runs["run_status"] != "ok").any():
        status = "failed"
    return StudyResult(study_dir, status, runs, summary)


def _to_run(run_dir: Path, retry_untrustworthy: bool) -> bool:
    if run_status(run_dir) != "ok":
        return True
    return retry_untrustworthy and not read_verdict(run_dir).usable


def _run_one(run, study: Study, study_dir: Path, bar: Progress, task) -> str:
    """Run one run of the study into its directory; show it on the bar; write the
    study's tables after it. Return its status."""
    values = ", ".join(f"{k.split('.')[-1]}={label(v)}" for k, v in run.values.items())
    bar.update(task, description=f"{run.name} {values}".strip())
    run_dir = study_dir / run.name
    if run_dir.exists():  # an attempt not ok (or not trusted): keep it, out of the way
        attempts = StudyPaths(study_dir).attempts
        attempts.mkdir(exist_ok=True)
        n = 1 + sum(1 for _ in attempts.glob(f"{run.name}-*"))
        shutil.move(str(run_dir), attempts / f"{run.name}-{n}")
    start = time.monotonic()
    result = run_experiment(run.experiment, f"{study.source} ({run.name})", str(run_dir), quiet())
    colour = "green" if result.status == "ok" else "red"
    seconds = time.monotonic() - start
    bar.console.print(f"{run.name} [{colour}]{result.status}[/{colour}] {seconds:.0f} s {values}")
    bar.advance(task)
    write_study_tables(study, study_dir)
    return result.status
