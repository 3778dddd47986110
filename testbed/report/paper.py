"""The "Against the paper" section of a study report: our values beside a paper's
figure, in the paper's axes, and one verdict per headline claim (computed by
`testbed.study.against` from the study directory and its reference.yaml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from testbed.report.figures import distribution_axis, figure, legend, legend_below, save, step_cdf
from testbed.report.run import table
from testbed.spec.reference import Reference
from testbed.study.against import arm_distributions, claims_table, points_table


def paper_section(ref: Reference, runs: pd.DataFrame, swept: list[str], study_dir: Path) -> str:
    """The section's Markdown; its plots are written into study_dir/plots."""
    claims = claims_table(ref, runs, study_dir)
    lines = ["## Against the paper", "",
             f"{ref.paper}, {ref.figure}"
             + (f", page {ref.page}" if ref.page else " (page not recorded)")
             + f"; values from {ref.source}. {ref.meaning}", "",
             "Ours: the mean over repeats of a ratio taken within each repeat (the same "
             "seeds), with its 95% confidence interval; only runs that ended ok and were "
             "trusted count. The paper's values are as read off its figure.", ""]  # fmt: skip
    if ref.not_kept:
        lines += ["What this setup could not keep of the paper's:", ""]
        lines += [f"- {item}" for item in ref.not_kept] + [""]
    if ref.points:
        points = points_table(ref, runs, study_dir)
        lines += ["### The figure's points", "", table(_cells(points)), ""]
        lines += [f"![ours beside the paper]({points_plot(ref, points, study_dir).as_posix()})", ""]
    if ref.cdf:
        arms = arm_distributions(ref.metric, runs, swept, study_dir)
        plot = cdf_plot(ref, arms, study_dir)
        lines += ["### The distribution (CDF)", "", f"![CDF]({plot.as_posix()})", ""]
    lines += ["### Verdicts", "", table(_claim_cells(claims)), ""]
    counts = claims["verdict"].value_counts()
    lines += [", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(claims)} claims.", ""]
    return "\n".join(lines)


def _interval(row) -> str:
    if not np.isfinite(row["ours"]):
        return "- (no usable runs)"
    if not np.isfinite(row["ci95_low"]):
        return f"{row['ours']:.3g} (n={row['n']})"
    return f"{row['ours']:.3g} [{row['ci95_low']:.3g}, {row['ci95_high']:.3g}] (n={row['n']})"


def _cells(points: pd.DataFrame) -> pd.DataFrame:
    out = points[["panel", "series", "x", "paper"]].copy()
    out["ours [95% CI]"] = [_interval(r) for _, r in points.iterrows()]
    return out


def _claim_cells(claims: pd.DataFrame) -> pd.DataFrame:
    out = claims[["claim", "paper"]].copy()
    out["ours [95% CI]"] = [_interval(r) for _, r in claims.iterrows()]
    out["rule"], out["verdict"] = claims["rule"], claims["verdict"]
    return out


def points_plot(ref: Reference, points: pd.DataFrame, into: Path) -> Path:
    """One panel per panel of the paper's figure: per series, ours (solid, 95% CI bars)
    and the paper's (dashed, open markers) against the paper's x axis."""
    panels = list(dict.fromkeys(points["panel"]))
    colours = {series: f"C{n}" for n, series in enumerate(sorted(set(points["series"])))}
    fig, axes = figure(len(panels), width=5.6)
    for ax, panel in zip(axes, panels):
        rows = points[points["panel"] == panel]
        entries = 0
        for series, line in rows.groupby("series", sort=True):
            line = line.sort_values("x")
            colour = colours[series]
            low = (line["ours"] - line["ci95_low"]).fillna(0)
            high = (line["ci95_high"] - line["ours"]).fillna(0)
            ax.errorbar(line["x"], line["ours"], yerr=[low, high], marker="o", capsize=3,
                        color=colour, label=f"ours: {series}")  # fmt: skip
            ax.plot(line["x"], line["paper"], linestyle="--", marker="s", fillstyle="none",
                    color=colour, label=f"paper: {series}")  # fmt: skip
            entries += 2
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set(xlabel=ref.x_label, ylabel=ref.y_label, title=panel or ref.figure)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(rows["x"].unique()), [f"{x:g}" for x in sorted(rows["x"].unique())])
        ax.grid(alpha=0.3)
        legend(ax, entries)
    return save(fig, into, "paper-points")


def cdf_plot(ref: Reference, arms: dict[str, np.ndarray], into: Path) -> Path:
    """Left: each arm's distribution (pooled over repeats) as a CDF. Right: the same,
    each value over the baseline arm's median, with the paper's normalised medians and
    95th percentiles (from its claims over that baseline) marked at 0.5 and 0.95. One
    legend under both panels, so that no curve or mark hides behind it."""
    fig, (raw, norm) = figure(2, width=6.0, height=4.6)
    unit, scale = distribution_axis(ref.metric)
    base = _baseline_median(ref, arms)
    for n, (name, values) in enumerate(arms.items()):
        label = f"{name} (the baseline)" if _is_baseline(ref, name) else name
        step_cdf(raw, values, scale, color=f"C{n}", label=label)
        if base:
            step_cdf(norm, values, 1 / base, color=f"C{n}")
    marks = [(c.paper, 0.5 if c.statistic == "median" else 0.95) for c in ref.claims
             if c.statistic in ("median", "p95") and not c.over and c.normalised
             and isinstance(c.paper, float)]  # fmt: skip
    for i, (x, y) in enumerate(marks):
        norm.plot([x], [y], marker="*", markersize=13, color="black", linestyle="none",
                  label="the paper's median / p95" if i == 0 else None)  # fmt: skip
    of = "fraction of " + (ref.distribution or "values")
    raw.set(xlabel=unit, ylabel=of, title="ours, per arm")
    norm.set(xlabel=ref.x_label or "over the baseline's median", ylabel=of,
             title="normalised by the baseline's median")  # fmt: skip
    for ax in (raw, norm):
        ax.grid(alpha=0.3)
    handles = [h for ax in (raw, norm) for h in ax.get_legend_handles_labels()[0]]
    return save(fig, into, "paper-cdf", rect=legend_below(fig, handles, columns=2))


def _is_baseline(ref: Reference, arm: str) -> bool:
    """Whether the arm labelled `arm` holds the baseline's values (`normalise`)."""
    tags = [f"{key.split('.')[-1]}={value}" for key, value in ref.normalise.items()]
    return all(t in arm.split(", ") for t in tags)


def _baseline_median(ref: Reference, arms: dict[str, np.ndarray]) -> float | None:
    """Median of the baseline arm's values (a CDF reference's `normalise` names every
    swept key, so one arm matches; `load_reference` checks that)."""
    pooled = [v for name, v in arms.items() if _is_baseline(ref, name)]
    values = np.concatenate(pooled) if pooled else np.array([])
    return float(np.median(values)) if len(values) else None
