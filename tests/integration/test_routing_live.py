"""Routing on real OVS switches beyond the quickstart: ECMP select groups on a
leaf-spine and on a fat-tree carry a training job's traffic."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration

SPECS = {
    "leaf-spine-ecmp": {"kind": "leaf-spine", "spines": 2, "leaves": 3, "hosts_per_leaf": 2},
    "fat-tree-ecmp": {"kind": "fat-tree", "k": 4},
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_job_runs_over_ecmp(tmp_path, name, no_leftovers):
    spec = {
        "name": name,
        "topology": SPECS[name],
        "controller": {"routing": "ecmp"},
        "jobs": [{"name": "j", "workers": 3, "servers": 1, "iterations": 30, "eval_every": 10}],
    }
    out = tmp_path / "run"
    proc = run_cli(["run", str(write_spec(tmp_path / "s.yaml", spec)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "ok"
    log = (out / "logs" / "controller.log").read_text()
    assert "all switches programmed" in log and "errors=0" in log and " ERROR " not in log
