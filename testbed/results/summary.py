"""The short table `testbed run` prints at the end."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table


def summary_table(jobs: pd.DataFrame) -> Table:
    """Per job: status, iterations, JCT, mean iteration time, final accuracy."""
    table = Table(title="jobs", title_justify="left")
    for column, justify in (("job", "left"), ("status", "left"), ("iterations", "right"),
                            ("JCT s", "right"), ("mean iter ms", "right"),
                            ("final accuracy", "right")):
        table.add_column(column, justify=justify)
    for row in jobs.itertuples(index=False):
        table.add_row(
            str(row.job), str(row.status), str(row.iterations), _fmt(row.jct_s, 1),
            _fmt(None if _missing(row.mean_iter_s) else row.mean_iter_s * 1000, 1),
            _fmt(row.final_accuracy, 3),
        )
    return table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int) -> str:
    return "-" if _missing(value) else f"{value:.{digits}f}"
