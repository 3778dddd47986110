"""The short tables `testbed run` prints at the end."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.table import Table

from testbed.layout import RunPaths


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


def traffic_tables(run_dir: Path) -> list[Table]:
    """Background traffic, if the run had any: per entry its achieved load (flows) or
    throughput (iperf3), then the flows' FCT p50 and p99 by size bucket."""
    from testbed.results.flows import fct_by_bucket
    from testbed.results.read import read_csv

    entries = read_csv(RunPaths(run_dir).table("traffic"))
    if entries is None:
        return []
    flows = read_csv(RunPaths(run_dir).table("flows"))
    flows = flows if flows is not None else pd.DataFrame()
    table = Table(title="traffic", title_justify="left")
    for column in (
        "entry",
        "kind",
        "hosts",
        "load",
        "offered load",
        "delivered load",
        "flows done",
        "Mb/s",
    ):
        table.add_column(column, justify="left" if column in ("kind", "hosts") else "right")
    for row in entries.to_dict("records"):
        flows_kind = row["kind"] == "flows"
        table.add_row(
            str(row["entry"]),
            str(row["kind"]),
            str(len(str(row["hosts"]).split())),
            _fmt(row.get("load"), 2),
            _fmt(row.get("offered_load"), 3),
            _fmt(row.get("delivered_load"), 3),
            f"{int(row['completed'])}/{int(row['flows'])}" if flows_kind else "-",
            _fmt(row.get("throughput_mbps"), 2),
        )
    tables = [table]
    if len(flows):
        fct = Table(title="background flow completion times", title_justify="left")
        for column in ("size", "flows", "FCT p50 ms", "FCT p99 ms"):
            fct.add_column(column, justify="left" if column == "size" else "right")
        for row in fct_by_bucket(flows).to_dict("records"):
            p50, p99 = row["fct_p50_s"], row["fct_p99_s"]
            fct.add_row(
                row["bucket"],
                str(row["flows"]),
                _fmt(None if _missing(p50) else p50 * 1000, 1),
                _fmt(None if _missing(p99) else p99 * 1000, 1),
            )
        tables.append(fct)
    return tables


def faults_table(run_dir: Path) -> list[Table]:
    """The run's faults, if it had any: when each fired, its detection and recovery."""
    from testbed.results.read import read_csv

    faults = read_csv(RunPaths(run_dir).table("faults"))
    if faults is None or not len(faults):
        return []
    table = Table(title="faults", title_justify="left")
    for column in ("at s", "what", "detected ms", "recovery ms", "pairs lost/probed", "detail"):
        table.add_column(column, justify="left" if column in ("what", "detail") else "right")
    for row in faults.to_dict("records"):
        detected = row["detected_at_s"] - row["time_s"]
        probed = row.get("probed_pairs")
        table.add_row(
            _fmt(row["time_s"], 1),
            str(row["what"]),
            _fmt(None if _missing(detected) else detected * 1000, 1),
            _fmt(None if _missing(row["recovery_s"]) else row["recovery_s"] * 1000, 1),
            "-" if _missing(probed) else f"{int(row['disrupted_pairs'])}/{int(probed)}",
            "" if _missing(row["detail"]) else str(row["detail"]),
        )
    return [table]
