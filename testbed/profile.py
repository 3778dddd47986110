"""`testbed profile`: how much gradient loss a job tolerates (APNet'19 §2.2).

The method, on the real job: a study over ``transport.drop_packets`` on a lossless
network, the job alone, `repeats` seeds per drop fraction. ``drop_packets: p`` makes
every received message lose each of its 362-entry packets with probability p, in both
directions (push and pull, reduce and gather), never resent: what blt hands the sync
layer at ``loss_bound: p`` when the network loses at least that much
(`testbed.transports.dropping`). So the bound found is a bound for blt. (APNet §2.2
drops random gradient entries at the application, on the push only; that is
``transport.drop_fraction``, which a sweep of one's own can still use.)

The seeds are shared across drop fractions (repeat i trains with seed+i at every
drop), so each repeat is a paired comparison: same initial weights, same batches,
only the drops differ. That pairing removes the seed-to-seed spread from the
comparison.

A drop fraction d is tolerated when the 95% confidence interval (t, n-1 degrees of
freedom) of the paired accuracy difference acc(d) - acc(0) lies above -tolerance: the
data show, at 95% confidence, that dropping d costs less than `tolerance` of final
accuracy. The loss bound is the largest d such that d and every smaller drop fraction
are tolerated. Too few repeats give wide intervals and a conservative (small) bound;
the table shows the intervals so that a reader can see which.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from testbed.errors import SpecError
from testbed.layout import StudyPaths
from testbed.report import report
from testbed.report.figures import axis_label, figure, save
from testbed.results.rundir import utc_stamp
from testbed.spec.load import apply_overrides, read_yaml
from testbed.spec.study import STUDY_KEYS, Study, expand
from testbed.study.runner import create_study_dir, run_study
from testbed.study.tables import ci95, counted

DROP_KEY = "jobs.0.transport.drop_packets"
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class ProfilePlan:
    """A validated profile: the study to run, and the profiled job's index in the spec."""

    study: Study
    index: int
    tolerance: float
    out: Path


def plan_profile(args: argparse.Namespace) -> ProfilePlan:
    """Validate the arguments and expand the profile study (no root, nothing built)."""
    raw = read_yaml(args.spec)
    drops = parse_drops(args.drops)
    if args.repeats < 2:
        raise SpecError("--repeats", "", args.repeats, "expected at least 2 (for an interval)")
    if not 0 < args.tolerance < 1:
        raise SpecError("--tolerance", "", args.tolerance, "expected an accuracy in (0, 1)")
    index, raw = single_job(raw, args.spec, args.job, args.overrides)
    raw["sweep"] = {DROP_KEY: drops}
    raw["repeats"] = args.repeats
    study = expand(raw, args.spec)
    name = study.runs[0].experiment.name
    out = Path(args.out) if args.out else Path("results") / name / f"profile-{utc_stamp()}"
    return ProfilePlan(study, index, args.tolerance, out)


def run_profile(plan: ProfilePlan) -> int:
    """Run the profile study and print its loss bound (exit 0 if found, 130 if
    interrupted: `testbed run --resume` finishes it)."""
    name = plan.study.runs[0].experiment.name
    result = run_study(plan.study, create_study_dir(name, plan.out))
    if result.status == "interrupted":
        print(f"profile interrupted; resume with: testbed run --resume {result.study_dir}",
              file=sys.stderr)  # fmt: skip
        print(result.study_dir)
        return EXIT_INTERRUPTED
    table = bound_table(result.runs, plan.tolerance)
    table.to_csv(StudyPaths(result.study_dir).table("profile"), index=False)
    bound = loss_bound(table)
    plot = accuracy_against_drop(table, plan.tolerance, bound, result.study_dir)
    path = report(result.study_dir)
    with open(path, "a") as fh:
        fh.write(f"\n## Loss bound\n\n![accuracy against drop fraction]({plot.as_posix()})\n\n")
        fh.write(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    _print(table, bound, plan.index, plan.tolerance, result.study_dir)
    return 0 if bound is not None else 1


def parse_drops(text: str) -> list[float]:
    """'0,0.01,0.1' -> [0.0, 0.01, 0.1]: sorted, 0 included (the reference)."""
    try:
        drops = sorted({float(x) for x in text.split(",") if x.strip()} | {0.0})
    except ValueError:
        raise SpecError("--drops", "", text, "expected comma-separated numbers") from None
    bad = [d for d in drops if not 0 <= d < 1]
    if bad:
        raise SpecError("--drops", "", bad[0], "expected drop fractions in [0, 1)")
    return drops


def single_job(raw: dict, source: str, job: str | None, overrides) -> tuple[int, dict]:
    """The spec with only the profiled job (its index in the spec, the new spec), and
    every link lossless: the profile measures the job's tolerance, not the network."""
    apply_overrides(raw, overrides, source)
    for key in STUDY_KEYS:
        if key in raw:
            raise SpecError(source, key, raw[key], "expected none: profile makes its own study")
    jobs = raw.get("jobs") or []
    names = [j.get("name") for j in jobs if isinstance(j, dict)]
    if job is None and names:
        job = names[0]
    if job not in names:
        listed = ", ".join(map(str, names))
        raise SpecError(source, "jobs", job, f"expected a job of the spec: {listed}")
    index = names.index(job)
    transport = jobs[index].get("transport", "tcp")
    kind = transport.get("kind") if isinstance(transport, dict) else transport
    if kind == "gloo":
        raise SpecError(source, f"jobs.{index}.transport", kind,
                        "expected tcp or blt: profile drops packets on the job's channels, "
                        "which gloo does not use")  # fmt: skip
    raw = {**raw, "jobs": [jobs[index]]}
    topology = raw.setdefault("topology", {})
    topology.setdefault("link", {})["loss_pct"] = 0.0
    for section in [*topology.get("tiers", {}).values(), *topology.get("directed", [])]:
        if "loss_pct" in section:
            section["loss_pct"] = 0.0
    return index, raw


def bound_table(runs: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per drop fraction of the study: final accuracy (n, mean, 95% CI) over its ok
    runs, the paired difference from drop 0 with its 95% CI, and whether it is
    tolerated. A drop fraction with fewer than 2 ok pairs has no interval and is not
    tolerated: a failed point must not let the bound step over it."""
    key = DROP_KEY
    runs = runs.astype({key: float})
    ok = runs[counted(runs)] if "status" in runs else runs.iloc[:0]
    reference = ok[ok[key] == 0].set_index("repeat")["final_accuracy"]
    rows = []
    for drop in sorted(runs[key].unique()):
        group = ok[ok[key] == drop]
        accuracy = ci95(group["final_accuracy"].to_numpy(dtype=float))
        paired = group.set_index("repeat")["final_accuracy"] - reference
        diff = ci95(paired.dropna().to_numpy(dtype=float))
        rows.append({"drop_packets": drop, "n": accuracy["n"],
                     "accuracy_mean": accuracy["mean"], "accuracy_ci95_low": accuracy["ci95_low"],
                     "accuracy_ci95_high": accuracy["ci95_high"], "diff_mean": diff["mean"],
                     "diff_ci95_low": diff["ci95_low"], "diff_ci95_high": diff["ci95_high"],
                     "tolerated": bool(diff["ci95_low"] >= -tolerance)})  # fmt: skip
    return pd.DataFrame(rows)


def loss_bound(table: pd.DataFrame) -> float | None:
    """The largest drop fraction that, with every smaller one, is tolerated."""
    bound = None
    for row in table.sort_values("drop_packets").itertuples():
        if not row.tolerated:
            break
        bound = row.drop_packets
    return bound


def accuracy_against_drop(table: pd.DataFrame, tolerance: float, bound, into: Path) -> Path:
    """Left: final accuracy (mean, 95% CI) against drop fraction. Right: the paired
    difference from drop 0 with its 95% CI, which decides, against -tolerance."""
    fig, (acc, diff) = figure(2)
    for ax, column, what in ((acc, "accuracy", "final accuracy"), (diff, "diff", "paired change")):
        low = table[f"{column}_mean"] - table[f"{column}_ci95_low"]
        high = table[f"{column}_ci95_high"] - table[f"{column}_mean"]
        ax.errorbar(table["drop_packets"], table[f"{column}_mean"], yerr=[low, high],
                    marker="o", capsize=3, label=f"{what} (mean, 95% CI)")  # fmt: skip
        if bound is not None:
            ax.axvline(bound, color="green", linestyle=":", label=f"loss bound = {bound:g}")
        ax.set_xlabel("packets dropped per message, both directions (fraction)")
        ax.grid(alpha=0.3)
    diff.axhline(-tolerance, color="grey", linestyle="--", label=f"-tolerance ({tolerance:g})")
    low, high = diff.get_ylim()  # the threshold in view, with room below it
    diff.set_ylim(min(low, -1.6 * tolerance), max(high, 0.6 * tolerance))
    acc.set(ylabel=axis_label("final_accuracy"), title="Final accuracy")
    diff.set(ylabel="accuracy change from drop 0, same seed", title="Paired change (decides)")
    for ax in (acc, diff):
        ax.legend(fontsize="small")
    return save(fig, into, "loss_bound")


def _print(table: pd.DataFrame, bound, index: int, tolerance: float, study_dir: Path) -> None:
    out = Table(title=f"final accuracy against drop fraction (tolerance {tolerance:g})")
    for col in ("drop", "n", "accuracy [95% CI]", "vs drop 0 [95% CI]", "tolerated"):
        out.add_column(col, justify="right")
    for r in table.itertuples():
        accuracy = f"{r.accuracy_mean:.4f} [{r.accuracy_ci95_low:.4f}, {r.accuracy_ci95_high:.4f}]"
        out.add_row(f"{r.drop_packets:g}", str(r.n), accuracy,
                    f"{r.diff_mean:+.4f} [{r.diff_ci95_low:+.4f}, {r.diff_ci95_high:+.4f}]",
                    "yes" if r.tolerated else "no")  # fmt: skip
    Console().print(out)
    if bound is None:
        print("no loss bound: even drop 0 failed", file=sys.stderr)
    else:
        print(f"loss bound {bound:g}; use it with:")
        print(f"  --set jobs.{index}.transport.loss_bound={bound:g}")
    print(study_dir)
