"""The short table `testbed run` prints at the end."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table


def summary_table(jobs: pd.DataFrame) -> Table:
    """Per job: status, iterations, JCT (next to its priority class, when prioritized),
    mean iteration time, final accuracy."""
    table = Table(title="jobs", title_justify="left")
    prioritized = jobs["priority_initial"].notna().any()
    columns = [("job", "left"), ("status", "left"), ("iterations", "right"), ("JCT s", "right")]
    columns += [("class", "right")] if prioritized else []
    columns += [("mean iter ms", "right"), ("final accuracy", "right")]
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for row in jobs.itertuples(index=False):
        cells = [str(row.job), str(row.status), str(row.iterations), _fmt(row.jct_s, 1)]
        if prioritized:
            cells.append(_class(row.priority_initial, row.priority_final))
        cells += [
            _fmt(None if _missing(row.mean_iter_s) else row.mean_iter_s * 1000, 1),
            _fmt(row.final_accuracy, 3),
        ]
        table.add_row(*cells)
    return table


def _class(first, last) -> str:
    if _missing(first):
        return "-"
    return f"{int(first)}" if first == last else f"{int(first)}->{int(last)}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int) -> str:
    return "-" if _missing(value) else f"{value:.{digits}f}"
