"""The run directory: a fresh folder per run, never reusing an existing one.

Its layout is named in `testbed.layout`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from testbed.errors import TestbedError
from testbed.layout import LOGS, RAW


def utc_stamp(when: dt.datetime | None = None) -> str:
    """Sortable UTC timestamp used as a run folder name, e.g. 20261121T233512Z."""
    return (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def refuse_non_empty(path: Path, what: str) -> None:
    """Fail unless `path` is absent or an empty folder: results are never overwritten."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TestbedError(f"--out {path}: exists and is not empty; {what} are never overwritten")


def create_run_dir(name: str, out: str | Path | None = None, root: str | Path = "results") -> Path:
    """Make and return an empty run directory.

    With `out`, that exact folder (it must be absent or empty); otherwise
    ``root/<name>/<UTC timestamp>``, suffixed ``-2``, ``-3``... if that exists.
    """
    if out is not None:
        path = Path(out)
        refuse_non_empty(path, "runs")
    else:
        base = Path(root) / name / utc_stamp()
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
    make_dirs(path, "run directory", (LOGS, RAW))
    return path


def make_dirs(path: Path, what: str, subdirs: tuple[str, ...] = ()) -> None:
    """Create `path` (with its parents and `subdirs`), owned by the sudo user like the
    results in it; a `TestbedError` naming it if it cannot be made (read-only, full)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for sub in subdirs or ("",):
            (path / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TestbedError(f"cannot create the {what} {path}: {exc.strerror}") from None
    for created in [*missing, *(path / sub for sub in subdirs)]:
        hand_over(created, recursive=False)


def hand_over(path: Path, recursive: bool = True) -> None:
    """Give `path` (and, recursive, all under it) to the user who ran ``sudo``, so they
    can read, move and delete their results without root. Nothing to do without sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    paths = [path]
    if recursive:
        paths += [Path(d) / n for d, dirs, files in os.walk(path) for n in dirs + files]
    for p in paths:
        try:
            os.chown(p, int(uid), int(gid), follow_symlinks=False)
        except OSError:
            continue  # vanished meanwhile, or a filesystem without owners
