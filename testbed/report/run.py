"""The report of one run directory: PNGs under plots/ and report.md, from the
directory's own files only (the Pantheon rule: a run is analysed from what it wrote)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from testbed.layout import RunPaths
from testbed.report.figures import axis_label, figure, legend, save
from testbed.results.read import read_csv, read_json

JOB_SUMMARY = ["job", "status", "transport", "iterations", "jct_s", "mean_iter_s",
               "final_accuracy", "error"]  # fmt: skip


def run_plots(run_dir: Path, into: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """Every plot the run's data allows, as (caption, path relative to `into`)."""
    plots = []
    its = read_csv(RunPaths(run_dir).table("iterations"))
    if its is not None and len(its):
        plots.append(("Iteration time per job", iteration_time(its, into, prefix)))
        evals = its.dropna(subset=["test_accuracy"])
        if len(evals):
            plots.append(("Test accuracy", accuracy(evals, into, prefix)))
    links = read_csv(RunPaths(run_dir).table("links"))
    if links is not None and len(links) > 1:
        path = utilization(run_dir, links, into, prefix)
        if path:
            plots.append(("Link utilization by tier (x: emulated-loss drops)", path))
    classes = read_csv(RunPaths(run_dir).table("controller"))
    if classes is not None and len(classes):
        # A job's class holds until the job ends, not only until its last change.
        ends = its.groupby("job")["time_s"].max().to_dict() if its is not None else {}
        plots.append(("Priority classes", priority_timeline(classes, into, prefix, ends)))
    return plots


def iteration_time(its: pd.DataFrame, into: Path, prefix: str = "") -> Path:
    """Left: the slowest worker's time per iteration (what a synchronous job waits
    for); right: the CDF of every worker's iteration times."""
    fig, (over, cdf) = figure(2)
    for job, rows in its.groupby("job"):
        step = rows.groupby("iteration")["iter_s"].max()
        over.plot(step.index, step.to_numpy(), label=str(job), linewidth=1)
        x = np.sort(rows["iter_s"].to_numpy())
        cdf.plot(x, np.arange(1, len(x) + 1) / len(x), label=str(job))
    over.set(xlabel="iteration", ylabel="slowest worker's iteration time (s)",
             title="Iteration time")  # fmt: skip
    cdf.set(xlabel=axis_label("iter_s"), ylabel="fraction of iterations (all workers)",
            title="CDF of iteration time", ylim=(0, 1.01))  # fmt: skip
    for ax in (over, cdf):
        ax.grid(alpha=0.3)
        legend(ax, its["job"].nunique())
    return save(fig, into, f"{prefix}iteration_time")


def accuracy(evals: pd.DataFrame, into: Path, prefix: str = "") -> Path:
    """Test accuracy against iteration and against time since the run started."""
    fig, (by_it, by_time) = figure(2)
    for job, rows in evals.groupby("job"):
        by_it.plot(rows["iteration"], rows["test_accuracy"], marker=".", label=str(job))
        by_time.plot(rows["time_s"], rows["test_accuracy"], marker=".", label=str(job))
    by_it.set(xlabel="iteration", ylabel=axis_label("test_accuracy"), title="Accuracy by iteration")
    by_time.set(xlabel=axis_label("time_s"), ylabel=axis_label("test_accuracy"),
                title="Accuracy by wall time")  # fmt: skip
    for ax in (by_it, by_time):
        ax.grid(alpha=0.3)
        legend(ax, evals["job"].nunique())
    return save(fig, into, f"{prefix}accuracy")


def utilization(run_dir: Path, links: pd.DataFrame, into: Path, prefix: str = "") -> Path | None:
    """Heatmap: one row per link direction that carried traffic, grouped by tier; one
    column per sample; colour = share of the configured rate; x = emulated-loss drops
    in that sample."""
    measured = read_json(RunPaths(run_dir).metadata).get("links", [])
    rates = {d["direction"]: d["configured_mbps"] for d in measured}
    tiers = link_tiers(run_dir)
    links = links[links["direction"].isin(rates)].sort_values("time_s")
    if links.empty:
        return None
    tx = links.pivot_table(index="direction", columns="time_s", values="tx_bytes")
    drops = links.pivot_table(index="direction", columns="time_s", values="loss_drops")
    times = tx.columns.to_numpy(dtype=float)
    dt = np.diff(times)
    mbps = tx.diff(axis=1).iloc[:, 1:].to_numpy() * 8 / 1e6 / dt
    order = sorted(tx.index, key=lambda d: (TIER_ORDER.get(tiers.get(d, ""), 9), d))
    rows = [list(tx.index).index(d) for d in order]
    util = 100 * mbps[rows] / np.array([rates[d] for d in order])[:, None]
    lost = drops.diff(axis=1).iloc[:, 1:].to_numpy()[rows] > 0
    fig, (ax,) = figure(1, width=9, height=max(3.5, min(9, 0.06 * len(order) + 2.5)))
    extent = (times[0], times[-1], len(order), 0)
    image = ax.imshow(util, aspect="auto", cmap="viridis", vmin=0, vmax=100,
                      interpolation="nearest", extent=extent)  # fmt: skip
    ys, xs = np.nonzero(lost)
    if len(xs):
        ax.scatter((times[xs] + times[xs + 1]) / 2, ys + 0.5, marker="x", s=14, color="red",
                   linewidths=0.8, label="emulated-loss drops")  # fmt: skip
        ax.legend(fontsize="small", loc="upper right")
    _tier_ticks(ax, [tiers.get(d, "?") for d in order])
    ax.set(xlabel=axis_label("time_s"), title="Link utilization by tier")
    fig.colorbar(image, ax=ax, label="utilization (% of configured rate)")
    return save(fig, into, f"{prefix}link_utilization")


TIER_ORDER = {"host": 0, "edge": 1, "core": 2, "fabric": 1, "bottleneck": 1}


def _tier_ticks(ax, row_tiers: list[str]) -> None:
    """Label each tier's block of rows once, with a line between blocks."""
    ticks, labels, start = [], [], 0
    for i in range(1, len(row_tiers) + 1):
        if i == len(row_tiers) or row_tiers[i] != row_tiers[start]:
            ticks.append((start + i) / 2)
            labels.append(f"{row_tiers[start]}\n({i - start})")
            if i < len(row_tiers):
                ax.axhline(i, color="white", linewidth=1)
            start = i
    ax.set_yticks(ticks, labels)
    ax.set_ylabel("link direction, by tier (count)")


def link_tiers(run_dir: Path) -> dict[str, str]:
    """direction 'a->b' -> its link's tier, from raw/topology.json."""
    topo = read_json(RunPaths(run_dir).topology_doc)
    tiers = {}
    for link in topo.get("links", []):
        tiers[f"{link['a']}->{link['b']}"] = tiers[f"{link['b']}->{link['a']}"] = link["tier"]
    return tiers


def priority_timeline(
    classes: pd.DataFrame, into: Path, prefix: str = "", ends: dict | None = None
) -> Path:
    """Each job's priority class over time (controller.csv), 0 = highest, up to the
    job's end (`ends`: job -> time of its last iteration) or its last change."""
    fig, (ax,) = figure(1, width=8)
    for job, rows in classes.groupby("job"):
        end = max(rows["time_s"].max(), (ends or {}).get(job, 0))
        ax.step([*rows["time_s"], end], [*rows["class"], rows["class"].iloc[-1]], where="post",
                label=str(job))  # fmt: skip
    ax.set(xlabel=axis_label("time_s"), ylabel="priority class (0 = highest)",
           title="Priority class per job")  # fmt: skip
    ax.invert_yaxis()
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    legend(ax, classes["job"].nunique())
    return save(fig, into, f"{prefix}priority")


def run_markdown(run_dir: Path, plots: list[tuple[str, Path]]) -> str:
    """report.md of a run: status, fidelity verdict, the jobs table, the plots."""
    meta = read_json(RunPaths(run_dir).metadata)
    lines = [f"# Run {meta.get('name', run_dir.name)}: {run_dir.name}", "",
             f"- status: **{meta.get('status', 'unknown')}**"]  # fmt: skip
    if meta.get("error"):
        lines.append(f"- error: {meta['error']}")
    lines += [f"- duration: {meta.get('duration_s', '?')} s", *fidelity_lines(meta), ""]
    jobs = read_csv(RunPaths(run_dir).table("jobs"))
    if jobs is not None and len(jobs):
        lines += ["## Jobs", "", table(jobs[[c for c in JOB_SUMMARY if c in jobs]]), ""]
    lines += traffic_markdown(run_dir)
    lines += figures_markdown(plots)
    return "\n".join(lines) + "\n"


TRAFFIC_SUMMARY = ["entry", "kind", "hosts", "load", "offered_load", "delivered_load", "flows",
                   "completed", "fct_p50_s", "fct_p99_s", "throughput_mbps"]  # fmt: skip


def traffic_markdown(run_dir: Path) -> list[str]:
    """The background traffic: each entry's load or throughput, and FCT by flow size."""
    from testbed.results.flows import fct_by_bucket

    entries = read_csv(RunPaths(run_dir).table("traffic"))
    if entries is None or not len(entries):
        return []
    lines = [
        "## Background traffic",
        "",
        table(entries[[c for c in TRAFFIC_SUMMARY if c in entries]]),
        "",
    ]
    flows = read_csv(RunPaths(run_dir).table("flows"))
    if flows is not None and len(flows):
        lines += ["Completed flows' FCT by size:", "", table(fct_by_bucket(flows)), ""]
    return lines


def fidelity_lines(meta: dict) -> list[str]:
    """The fidelity verdict, when the run recorded one."""
    fid = meta.get("fidelity")
    if not fid:
        return []
    verdict = "trustworthy" if fid.get("trustworthy") else "NOT trustworthy"
    reasons = "; ".join(fid.get("reasons", [])) or "no reasons against"
    return [f"- fidelity: **{verdict}** as a network measurement ({reasons}); machine busy "
            f"p50 {fid.get('cpu_busy_p50_pct')}%, p95 {fid.get('cpu_busy_p95_pct')}%"]  # fmt: skip


def figures_markdown(plots: list[tuple[str, Path]]) -> list[str]:
    """Each plot as a titled, embedded image."""
    lines = []
    for caption, path in plots:
        lines += [f"## {caption}", "", f"![{caption}]({path.as_posix()})", ""]
    return lines


def table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (floats to 4 significant digits; an empty cell,
    not "nan", where a text column has no value)."""
    return frame.astype(object).where(frame.notna(), "").to_markdown(index=False, floatfmt=".4g")
