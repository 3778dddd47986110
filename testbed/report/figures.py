"""What every plot shares: the non-interactive backend, one size and style, axis labels
with units, and saving. Kept apart so that each report module only says what it draws."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: reports are written by root on headless machines

import matplotlib.pyplot as plt  # noqa: E402

DPI = 110
PLOTS = "plots"  # the folder, next to report.md, that holds the PNGs

# Axis labels of the quantities reports plot, units included.
LABELS = {
    "iter_s": "iteration time (s)",
    "mean_iter_s": "mean iteration time (s)",
    "p50_iter_s": "median iteration time (s)",
    "p99_iter_s": "p99 iteration time (s)",
    "jct_s": "job completion time (s)",
    "startup_s": "start-up time (s)",
    "final_accuracy": "final test accuracy (fraction)",
    "flows_fct_p50_s": "background flows' median FCT (s)",
    "test_accuracy": "test accuracy (fraction)",
    "iterations": "iterations completed",
    "time_s": "time since run start (s)",
}
UNITS = (("_pct", "%"), ("_mbps", "Mb/s"), ("_ms", "ms"), ("_s", "s"), ("_bytes", "bytes"),
         ("_fraction", "fraction"), ("_mb", "MB"))  # fmt: skip


def axis_label(key: str) -> str:
    """A readable axis label for a column or a dotted spec key, with its unit."""
    if key in LABELS:
        return LABELS[key]
    if key.startswith("bytes_") and key.endswith("_tier"):
        return f"bytes on the {key[6:-5]} tier"
    name = key.split(".")[-1]
    for suffix, unit in UNITS:
        if name.endswith(suffix):
            return f"{key} ({unit})"
    return key


def figure(panels: int = 1, width: float = 6.4, height: float = 4.2):
    """A figure with `panels` side-by-side axes (a list, even of one)."""
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    return fig, list(axes[0])


def save(fig, folder: Path, name: str, rect: tuple | None = None) -> Path:
    """Write `fig` as folder/plots/<name>.png; return the path relative to `folder`.
    `rect` keeps part of the figure free of axes (e.g. for a legend beneath them)."""
    (folder / PLOTS).mkdir(exist_ok=True)
    rel = Path(PLOTS) / f"{name}.png"
    fig.tight_layout(rect=rect)
    fig.savefig(folder / rel, dpi=DPI)
    plt.close(fig)
    return rel


def legend(ax, entries: int) -> None:
    """A legend that stays readable: outside the axes when there are many entries."""
    if entries == 0:
        return
    if entries > 6:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize="small")


def distribution_axis(metric: str) -> tuple[str, float]:
    """Axis label and scale of a distribution (`links.bytes` or `jobs.<column>`)."""
    if metric == "links.bytes":
        return "bytes a link carried (MB)", 1e-6
    return axis_label(metric.split(".")[-1]), 1.0


def step_cdf(ax, values, scale: float = 1.0, **style) -> None:
    """The empirical CDF of `values` (times `scale`) as a step line on `ax`."""
    xs = np.sort(np.asarray(values, dtype=float)) * scale
    ax.step(xs, np.arange(1, len(xs) + 1) / max(1, len(xs)), where="post", **style)


def legend_below(fig, handles=None, columns: int = 1) -> tuple:
    """One legend beneath the axes (CDFs fill the corners a legend would take); the
    `rect` that `save` keeps free of axes for it."""
    kwargs = {"handles": handles} if handles is not None else {}
    fig.legend(loc="lower center", ncol=columns, fontsize="small", frameon=False, **kwargs)
    entries = len(handles) if handles is not None else len(fig.axes[0].get_lines())
    rows = -(-entries // columns)
    inches = fig.get_size_inches()[1]
    return (0, min(0.5, 0.19 * (rows + 1) / inches), 1, 1)
