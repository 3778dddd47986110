"""Readers of a run directory's files that tolerate a run cut short: a missing or
empty table, a half-written JSON or JSONL record. Analysis reads only through these."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.layout import RunPaths


def read_csv(path: Path):
    """A CSV of a run or study directory as a DataFrame, or None when it is absent or
    empty (analysis reads what a run wrote, and a cut-short run wrote less)."""
    import pandas as pd  # here: the harness that creates run dirs needs no pandas for it

    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError):
        return None


def read_json(path: Path) -> dict:
    """A JSON file of a run directory, or {} when it is absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_jsonl(path: Path) -> list[dict]:
    """One JSONL file's records, tolerating a half-written last line."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a process killed mid-write leaves a partial last line
    return records


def run_start(run_dir: Path) -> float:
    """The run's t0 (Unix time) from metadata.json; times in the tables count from it."""
    return float(json.loads(RunPaths(run_dir).metadata.read_text())["t0_unix"])
