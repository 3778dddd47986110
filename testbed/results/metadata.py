"""metadata.json: what ran, where, with which software, and how it ended.

Written when the run starts (status ``running``) and rewritten at every phase, so
even a run killed with SIGKILL leaves a file that says how far it got.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import testbed
from testbed.layout import RunPaths

REPO = Path(testbed.__file__).resolve().parent.parent


class Metadata:
    """A JSON document kept in sync with ``run_dir/metadata.json``."""

    def __init__(self, run_dir: Path, **initial: Any):
        self.path = RunPaths(run_dir).metadata
        self.data: dict[str, Any] = {
            "status": "running",
            "started_utc": now_utc(),
            "testbed_version": testbed.__version__,
            "git": git_state(),
            **initial,
        }
        self.save()

    def update(self, **fields: Any) -> None:
        """Merge `fields` and rewrite the file."""
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the code that ran (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}
