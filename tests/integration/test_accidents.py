"""Accidents a run must survive with a clear status and nothing leaked: a second run
while one is active, a full disk, results owned by the user behind sudo, and spec
strings full of shell metacharacters."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, start_cli, stop, write_spec
from tests.integration.leaks import new_leftovers, snapshot

pytestmark = pytest.mark.integration

LONG = {
    "name": "long",
    "topology": {"kind": "dumbbell", "hosts_per_side": 2},
    "jobs": [{"name": "j", "workers": 2, "servers": 1, "iterations": 1_000_000}],
}
SHORT = {**LONG, "name": "short", "jobs": [{**LONG["jobs"][0], "iterations": 20}]}
OWNER = 4321  # a uid/gid no file here has: what `sudo` would put in SUDO_UID/SUDO_GID


def wait_for(predicate, proc, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail("the first run did not start training in time")


def test_second_run_refuses_at_once_naming_the_active_one(tmp_path):
    """While a run trains, a second `testbed run` fails within seconds, names the first
    run's directory and PID, creates nothing, and the first one goes on. The first
    was started as if under sudo: everything in its directory is the user's."""
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    env = {**os.environ, "SUDO_UID": str(OWNER), "SUDO_GID": str(OWNER)}
    first = start_cli(["run", str(write_spec(tmp_path / "long.yaml", LONG)), "--out",
                       str(first_out)], env=env)  # fmt: skip
    records = first_out / "raw" / "j" / "worker0.jsonl"
    wait_for(lambda: records.exists() and '"iteration"' in records.read_text(), first)
    started = time.monotonic()
    second = run_cli(["run", str(write_spec(tmp_path / "short.yaml", SHORT)), "--out",
                      str(second_out)], timeout=60)  # fmt: skip
    assert time.monotonic() - started < 15  # refused up front, not after building
    assert second.returncode != 0
    message = second.stderr.strip().splitlines()[-1]
    assert "another run is active" in message
    assert str(first_out) in message and f"pid {first.pid}" in message
    assert not second_out.exists()
    assert first.poll() is None  # the active run was not disturbed
    stop(first)
    assert json.loads((first_out / "metadata.json").read_text())["status"] == "interrupted"
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [first_out, *first_out.rglob("*")]}
    assert owners == {(OWNER, OWNER)}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 400 kB tmpfs of our own, mounted for this test only."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_ends_the_run_with_a_clear_error(tmp_path, tiny_disk, no_leftovers):
    """The run directory is on a 400 kB disk: the harness's debug log and links.csv
    fill it within seconds. The run ends failed, says "No space left on device", tears
    the network down (no_leftovers), and keeps what it had written."""
    out = tiny_disk / "run"
    result = run_cli(["run", str(write_spec(tmp_path / "long.yaml", LONG)), "--out", str(out)],
                     timeout=300)  # fmt: skip
    assert result.returncode != 0
    verdict = result.stderr[result.stderr.rindex("run failed: ") :].splitlines()[0]
    assert "No space left on device" in verdict, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert (out / "spec.yaml").exists() and (out / "logs" / "harness.log").stat().st_size > 0


def test_unwritable_results_directory_is_refused_before_building(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    before = snapshot()
    result = run_cli(["run", str(write_spec(tmp_path / "s.yaml", SHORT)), "--out",
                      str(blocker / "run")], timeout=60)  # fmt: skip
    assert result.returncode != 0
    assert f"cannot create the run directory {blocker / 'run'}: Not a directory" in result.stderr
    assert new_leftovers(before, snapshot()) == {}


METACHARS = "; touch {marker}; $(touch {marker}) `touch {marker}` | & > {marker} ' \" * ?"
ECHO = """\
import json, os, sys
print(json.dumps({"iteration": 0, "argv": sys.argv[1:], "env": os.environ["TB_FUZZ"],
                  "cwd": os.getcwd()}), flush=True)
"""


def test_shell_metacharacters_reach_programs_as_plain_text(tmp_path):
    """Every spec string that may hold arbitrary text (a command's arguments, env
    values, workdir, a CDF path) is full of shell syntax that would create a marker
    file if any shell ever saw it. The program gets each string back verbatim, and no
    marker exists afterwards."""
    marker = tmp_path / "pwned"
    evil = METACHARS.format(marker=marker)
    workdir = tmp_path / "dir; touch pwned $(touch pwned)"
    workdir.mkdir()
    (workdir / "echo.py").write_text(ECHO)
    cdf = workdir / "sizes `touch pwned`.cdf"
    cdf.write_text("1000 0\n2000 1\n")
    spec = {
        "name": "meta",
        "topology": {"kind": "dumbbell", "hosts_per_side": 2},
        "jobs": [{"name": "m", "workers": 1, "command": ["{python}", "echo.py", evil],
                  "env": {"TB_FUZZ": evil}, "workdir": str(workdir)}],
        "traffic": [{"kind": "flows", "load": 0.1, "distribution": str(cdf),
                     "duration_s": 2}],
    }  # fmt: skip
    out = tmp_path / "run"
    result = run_cli(["run", str(write_spec(tmp_path / "meta.yaml", spec)), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    row = pd.read_csv(out / "iterations.csv").iloc[0]
    assert json.loads(row["argv"]) == [evil]
    assert row["env"] == evil and row["cwd"] == str(workdir)
    assert not marker.exists() and not list(Path(workdir).glob("pwned*"))
    assert not list(Path.cwd().glob("pwned*"))
