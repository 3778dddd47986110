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


STUDY_SPEC = """name: s
topology: {kind: dumbbell, hosts_per_side: 2}
jobs: [{name: j, workers: 2, servers: 1}]
sweep: {jobs.0.lr: [0.1, 0.2]}
repeats: 2
"""


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run"], ["testbed run", "a spec file or --resume DIR"]),
        (["run", "--resume", "DIR", "configs/quickstart.yaml"], ["--resume", "no spec"]),
        (["run", "--resume", "DIR", "--out", "x"], ["--resume", "--out"]),
        (["run", "configs/quickstart.yaml", "--sweep", "jobs.0.lr=0.1"], ["non-empty list"]),
        (["run", "STUDY", "--sweep", "jobs.0.lr=[0.1,500]"], ["(point 1)", "jobs.0.lr", "500"]),
        (["profile", "STUDY"], ["expected none: profile makes its own study"]),
        (["profile", "configs/quickstart.yaml", "--drops", "0,1.5"], ["--drops", "[0, 1)"]),
        (["profile", "configs/quickstart.yaml", "--repeats", "1"], ["--repeats", "at least 2"]),
        (["profile", "configs/quickstart.yaml", "--job", "nope"], ["jobs", "nope", "mlp"]),
        (["report", "A", "B"], ["testbed report", "--compare"]),
    ],
)
def test_study_arguments_are_checked_before_root_with_one_line(
    argv, words, tmp_path, monkeypatch, capsys
):
    """Without root, a bad study or profile argument is still a one-line usage error
    (exit 2): nothing needs root before its input is valid."""
    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY_SPEC)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = cli.main([str(spec) if a == "STUDY" else a for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for word in words:
        assert word in err[0], err[0]


def test_check_lists_every_run_of_a_study(tmp_path, capsys):
    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY_SPEC)
    assert cli.main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "# 4 runs:" in out
    assert "#   p001-r1 seed=2 jobs.0.lr=0.2" in out


def test_report_of_a_directory_that_is_no_run_is_one_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run directory" in err[0]
