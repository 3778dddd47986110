"""Analysis anywhere: a plain venv (no system packages, so no Mininet; no root needed)
with only `pip install .` checks specs, prints the schema and reports on a run
directory copied out of the place it was made, as a researcher does on a laptop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory) -> Path:
    """A venv made without --system-site-packages, with the project installed from a
    copy of the sources (no extras: no torch, no os-ken)."""
    root = tmp_path_factory.mktemp("plain")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_not_sources)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(src)]
    proc = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def _not_sources(directory: str, names: list[str]) -> set[str]:
    """What a copy of the sources leaves out: the venv, git, caches, and the top-level
    results/ and site/ (testbed/results/ is code)."""
    top = Path(directory) == REPO
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", "build"}
    return {n for n in names if n in skip or n.endswith(".egg-info")} | (
        {"results", "site"} & set(names) if top else set()
    )


def _run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / "testbed"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def test_the_plain_venv_lacks_the_harness(plain_venv):
    harness = ("mininet", "torch", "os_ken")
    probe = f"import importlib.util as u; print([m for m in {harness!r} if u.find_spec(m)])"
    out = subprocess.run(
        [str(plain_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_check_and_schema_work_without_the_harness(plain_venv, tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(REPO / "configs" / "quickstart.yaml", spec)
    check = _run(plain_venv, "check", str(spec), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "topology:" in check.stdout  # the resolved spec
    schema = _run(plain_venv, "schema", cwd=tmp_path)
    assert schema.returncode == 0 and '"properties"' in schema.stdout, schema.stderr


def test_run_without_the_harness_says_what_is_missing(plain_venv, tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(REPO / "configs" / "quickstart.yaml", spec)
    run = _run(plain_venv, "run", str(spec), cwd=tmp_path)
    assert run.returncode != 0
    assert "Mininet" in run.stderr and "make bootstrap" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr  # one line, no traceback


def test_report_on_a_copied_run_directory(plain_venv, quickstart, tmp_path):
    _, out, _ = quickstart
    copy = tmp_path / "laptop" / out.name
    shutil.copytree(out, copy)
    report = _run(plain_venv, "report", str(copy), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = (copy / "report.md").read_text()
    assert "status: **ok**" in text
    assert list((copy / "plots").glob("*.png")), "no plots drawn"
