"""The command line's contract: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testbed import cli

TESTBED = [sys.executable, "-m", "testbed"]


def test_check_prints_resolved_spec():
    proc = subprocess.run(
        [*TESTBED, "check", "configs/quickstart.yaml"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "congestion_control: cubic" in proc.stdout  # a default filled in


def test_check_bad_spec_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntopology: {kind: fat-tree, k: 3}\njobs: [{name: a}]\n")
    proc = subprocess.run([*TESTBED, "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0] == f"error: {bad}: topology.k = 3: expected an even integer between 2 and 16"


def test_run_without_root_refuses_before_doing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = tmp_path / "run"
    code = cli.main(["run", "configs/quickstart.yaml", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "needs root" in err[0]
    assert not out.exists()


def test_run_validates_before_root_check(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = cli.main(["run", "configs/quickstart.yaml", "--set", "jobs.0.workers=0"])
    assert code == 2
    assert "jobs.0.workers = 0" in capsys.readouterr().err


def test_doctor_reports_everything_it_promises():
    proc = subprocess.run([*TESTBED, "doctor"], capture_output=True, text=True)
    assert proc.returncode == 0
    for word in (
        "root",
        "Open vSwitch",
        "datapath",
        "sch_netem",
        "nftables",
        "/dev/net/tun",
        "mininet",
        "os-ken",
        "torch",
    ):
        assert word in proc.stdout


@pytest.mark.parametrize("argv", [["check"], ["frobnicate"]])
def test_usage_errors_exit_2(argv):
    proc = subprocess.run([*TESTBED, *argv], capture_output=True, text=True)
    assert proc.returncode == 2
