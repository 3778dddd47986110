"""The run directory: a fresh folder per run, never reusing an existing one.

Layout (see results/README.md)::

    spec.yaml  metadata.json  iterations.csv  jobs.csv  messages.csv
    logs/      one log per host process, the controller and the harness
    raw/       per-process JSONL records and role configs the CSVs are built from
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from testbed.errors import TestbedError


def utc_stamp(when: dt.datetime | None = None) -> str:
    """Sortable UTC timestamp used as a run folder name, e.g. 20261121T233512Z."""
    return (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def create_run_dir(name: str, out: str | Path | None = None, root: str | Path = "results") -> Path:
    """Make and return an empty run directory.

    With `out`, that exact folder (it must be absent or empty); otherwise
    ``root/<name>/<UTC timestamp>``, suffixed ``-2``, ``-3``... if that exists.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise TestbedError(f"--out {path}: exists and is not empty; runs are never overwritten")
    else:
        base = Path(root) / name / utc_stamp()
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    for sub in ("logs", "raw"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path
