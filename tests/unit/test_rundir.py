"""Run directories are fresh: never reused, never overwritten."""

from __future__ import annotations

import pytest

from testbed.errors import TestbedError
from testbed.results import rundir
from testbed.results.rundir import create_run_dir


def test_default_layout(tmp_path):
    path = create_run_dir("exp", root=tmp_path)
    assert path.parent == tmp_path / "exp"
    assert (path / "logs").is_dir() and (path / "raw").is_dir()


def test_same_second_gets_a_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "utc_stamp", lambda when=None: "20260101T000000Z")
    first = create_run_dir("exp", root=tmp_path)
    second = create_run_dir("exp", root=tmp_path)
    assert first.name == "20260101T000000Z" and second.name == "20260101T000000Z-2"


def test_out_must_be_empty(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("data")
    with pytest.raises(TestbedError, match="never overwritten"):
        create_run_dir("exp", out=out)
    assert (out / "keep.txt").read_text() == "data"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert create_run_dir("exp", out=empty) == empty
