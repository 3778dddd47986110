"""Our values beside a paper's (`testbed.spec.reference`): per point of its figure and
per headline claim, computed from a study directory alone, with a verdict per claim.

Every value is a per-repeat ratio (the arm over its baseline, both from the same
repeat: the same seeds), averaged over the repeats whose runs are all usable (ended
ok, trusted), with its 95% confidence interval (t, n-1 degrees of freedom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from testbed.layout import StudyPaths
from testbed.results.read import read_csv
from testbed.spec.reference import Claim, Quantity, Reference
from testbed.spec.study import label
from testbed.study.tables import ci95, counted

VERDICTS = ("reproduced", "not reproduced", "opposite")
OPEN = 1e9  # a range's upper end this large stands for "no upper end"


def same(a, b) -> bool:
    """Whether a runs.csv cell and a reference value name the same swept value (numbers
    compare as numbers: 20 and 20.0 are one)."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == label(b)


def in_arm(rows: pd.DataFrame, at: dict) -> pd.Series:
    """Which runs.csv rows hold every value of the arm `at` (swept key -> value)."""
    inside = pd.Series(True, index=rows.index)
    for key, value in at.items():
        inside &= rows[key].map(lambda cell, value=value: same(cell, value)).astype(bool)
    return inside


def arm(runs: pd.DataFrame, at: dict) -> pd.DataFrame:
    """The usable runs.csv rows of the arm `at` (swept key -> value)."""
    rows = runs[counted(runs)]
    return rows[in_arm(rows, at)]


def statistic(values: np.ndarray, name: str) -> float:
    if len(values) == 0:
        return float("nan")
    return float(
        {"mean": np.mean, "median": np.median}.get(name, lambda v: np.percentile(v, 95))(values)
    )


def distribution(metric: str, rows: pd.DataFrame, study_dir: Path) -> np.ndarray:
    """The values one run contributes to `metric`, a distribution (links.bytes, or
    jobs.<column>); `rows` are its runs.csv rows, one per job."""
    if metric == "links.bytes":
        links = read_csv(StudyPaths(study_dir).run(rows["run"].iloc[0]).table("link_bytes"))
        if links is None:
            return np.array([])
        per_link = links.groupby("link")["bytes"].sum()
        return per_link[per_link > 0].to_numpy(dtype=float)  # idle links carry nothing
    return rows[metric.split(".", 1)[1]].dropna().to_numpy(dtype=float)


def run_value(ref: Reference, rows: pd.DataFrame, stat: str, study_dir: Path) -> float:
    """The metric of one run: its job's column, or a statistic of its distribution."""
    if ref.distribution is None:
        return float(rows[ref.column].iloc[0]) if len(rows) == 1 else float("nan")
    return statistic(distribution(ref.metric, rows, study_dir), stat)


def denominator(ref: Reference, q: Quantity) -> dict | None:
    """The arm `q` is divided by: `over`, the baseline, or none (see the reference)."""
    if q.over:
        return {**q.at, **q.over}
    return {**q.at, **ref.normalise} if q.normalised else None


def per_repeat(ref: Reference, runs: pd.DataFrame, q: Quantity, study_dir: Path) -> list[float]:
    """`q` in each repeat whose runs, of the arm and of its denominator, are usable."""
    if q.metric:
        ref = ref.model_copy(update={"metric": q.metric})
    num, den_at = arm(runs, q.at), denominator(ref, q)
    den = arm(runs, den_at) if den_at is not None else None
    values = []
    for repeat, rows in num.groupby("repeat"):
        v = _value(ref, q, rows, study_dir)
        if den is not None:
            base = den[den["repeat"] == repeat]
            v = v / _value(ref, q, base, study_dir) if len(base) else float("nan")
        if np.isfinite(v):
            values.append(v)
    return values


def _value(ref: Reference, q: Quantity, rows: pd.DataFrame, study_dir: Path) -> float:
    """One run's value of `q`: its metric, per its `per` column if it names one."""
    value = run_value(ref, rows, q.statistic, study_dir)
    if q.per is None:
        return value
    return value / run_value(ref.model_copy(update={"metric": q.per}), rows, "mean", study_dir)


def ours(ref: Reference, runs: pd.DataFrame, q: Quantity, study_dir: Path) -> dict:
    """n, mean and 95% CI of `q` over repeats."""
    return ci95(np.array(per_repeat(ref, runs, q, study_dir)))


def verdict(claim: Claim, mean: float) -> str:
    """The claim's rule applied to our mean (never anything else)."""
    if not np.isfinite(mean):
        return "not reproduced"
    if claim.reproduced[0] <= mean <= claim.reproduced[1]:
        return "reproduced"
    if claim.opposite and claim.opposite[0] <= mean <= claim.opposite[1]:
        return "opposite"
    return "not reproduced"


def points_table(ref: Reference, runs: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """One row per point of the paper's figure: the paper's value beside ours."""
    rows = []
    for p in ref.points:
        value = ours(ref, runs, p, study_dir)
        rows.append({"panel": p.panel, "series": p.series, "x": p.x, "paper": p.paper,
                     "ours": value["mean"], "ci95_low": value["ci95_low"],
                     "ci95_high": value["ci95_high"], "n": value["n"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["panel", "series", "x", "paper", "ours", "ci95_low",
                                       "ci95_high", "n"])  # fmt: skip


def claims_table(ref: Reference, runs: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    """One row per claim: the paper's number, ours with its CI, the rule, the verdict."""
    rows = []
    for c in ref.claims:
        value = ours(ref, runs, c, study_dir)
        rule = f"reproduced {_span(c.reproduced)}"
        if c.opposite:
            rule += f"; opposite {_span(c.opposite)}"
        rows.append({"claim": c.claim, "paper": c.paper, "ours": value["mean"],
                     "ci95_low": value["ci95_low"], "ci95_high": value["ci95_high"],
                     "n": value["n"], "rule": rule,
                     "verdict": verdict(c, value["mean"])})  # fmt: skip
    return pd.DataFrame(rows)


def _span(r: tuple[float, float]) -> str:
    """A rule's range as a reader writes it: "in [0.28, 0.63]", or ">= 1" when open."""
    return f">= {r[0]:g}" if r[1] >= OPEN else f"in [{r[0]:g}, {r[1]:g}]"


def arm_distributions(
    metric: str, runs: pd.DataFrame, swept: list[str], study_dir: Path
) -> dict[str, np.ndarray]:
    """Per arm (its swept values as a label), the distribution `metric`'s values pooled
    over its usable runs: what a CDF draws, one line per arm."""
    usable = runs[counted(runs)]
    out: dict[str, np.ndarray] = {}
    for values, rows in usable.groupby(swept, sort=False):
        name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(swept, np.atleast_1d(values)))
        parts = [distribution(metric, r, study_dir) for _, r in rows.groupby("run")]
        out[name] = np.concatenate(parts) if parts else np.array([])
    return out
