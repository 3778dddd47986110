"""`testbed report`: PNGs (matplotlib) and a report.md that embeds them, for a run
directory, a study directory, or several runs compared. Each reads nothing but the
directories it is given, and writes report.md and plots/ into the directory (a
comparison into a directory of its own)."""

from __future__ import annotations

from pathlib import Path

import yaml

from testbed.errors import TestbedError
from testbed.layout import RunPaths, StudyPaths
from testbed.report.compare import compare_markdown, compare_plots
from testbed.report.run import run_markdown, run_plots
from testbed.report.study import (
    cdf_plots,
    relative_plots,
    relative_summary,
    study_markdown,
    study_plots,
)
from testbed.results.read import read_csv
from testbed.spec.reference import REFERENCE_FILE, load_reference

REPORT = "report.md"


def report(directory: Path, include_untrustworthy: bool = False) -> Path:
    """Write the report of a run or study directory; return report.md's path.

    A study's statistics leave out the runs that did not end ok or that their fidelity
    verdict does not trust (summary.csv); `include_untrustworthy` counts the ok ones of
    those again, and the report marks every figure that includes one."""
    if StudyPaths(directory).spec.exists():
        text = _study_report(directory, include_untrustworthy)
    elif RunPaths(directory).metadata.exists():
        text = run_markdown(directory, run_plots(directory, directory))
    else:
        raise TestbedError(f"{directory}: neither a run directory (metadata.json) "
                           "nor a study directory (study.yaml)")  # fmt: skip
    (directory / REPORT).write_text(text)
    return directory / REPORT


def _zips(spec: dict) -> list[dict]:
    """The zip groups of a recorded study spec (`zip:` is one group, or a list)."""
    zipped = spec.get("zip", {})
    return [group for group in ([zipped] if isinstance(zipped, dict) else zipped) if group]


def _axes(spec: dict) -> list[list[str]]:
    """The axes of a recorded study spec, each as its keys: every swept key alone, then
    each zip group's keys together."""
    return [[key] for key in spec.get("sweep", {})] + [list(group) for group in _zips(spec)]


def _study_report(directory: Path, include_untrustworthy: bool) -> str:
    """A study's report.md: the summary and its plots, the metrics relative to a
    baseline arm and the CDFs its spec asks for (`report:`), and with a paper's
    reference file, the section against the paper."""
    recorded = yaml.safe_load(StudyPaths(directory).spec.read_text())
    spec = recorded["spec"]
    axes = _axes(spec)
    swept = [key for axis in axes for key in axis]
    asked = spec.get("report", {})
    runs = read_csv(StudyPaths(directory).table("runs"))
    summary = read_csv(StudyPaths(directory).table("summary"))
    if include_untrustworthy and runs is not None:
        from testbed.study.tables import summary_table  # the spec's machinery: only here

        summary = summary_table(runs, swept, include_untrustworthy=True)
    plots = study_plots(directory, axes, summary) if summary is not None else []
    if runs is not None and asked.get("relative_to"):
        relative = relative_summary(runs, swept, asked["relative_to"])
        plots += relative_plots(relative, axes, asked["relative_to"], directory)
    if runs is not None and asked.get("cdf"):
        plots += cdf_plots(runs, swept, asked["cdf"], directory)
    text = study_markdown(directory, swept, plots, summary, include_untrustworthy)
    if runs is not None and (directory / REFERENCE_FILE).exists():
        from testbed.report.paper import paper_section  # the spec's machinery: only here

        source = str(StudyPaths(directory).spec)
        ref = load_reference(directory / REFERENCE_FILE, swept, source, _zips(spec))
        text += "\n" + paper_section(ref, runs, swept, directory)
    return text


def compare_report(directories: list[Path], out: Path) -> Path:
    """Overlay several run directories into `out`; return its report.md's path."""
    for directory in directories:
        if not RunPaths(directory).metadata.exists():
            raise TestbedError(f"--compare {directory}: not a run directory (no metadata.json)")
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(compare_markdown(directories, compare_plots(directories, out)))
    return out / REPORT
