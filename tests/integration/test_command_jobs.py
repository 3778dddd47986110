"""Command jobs on a real network: the user's own DDP script, run unchanged with
torchrun's environment in four Mininet hosts, and what happens when one rank fails or
a job outlives its timeout_s."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration

EXAMPLE = Path("examples/ddp_train.py").resolve()


def test_ddp_script_trains_over_lossy_fat_tree(tmp_path, no_leftovers):
    """examples/ddp_train.py on 4 hosts, 1% loss on every core link: the job is ok,
    every rank exits 0, and its loss goes down.

    The bound: cross-entropy starts near ln(10) = 2.30 (10 classes, random init) and
    the script's own run outside the testbed reaches ~0.5 after 60 iterations, so
    "the last 10 iterations' mean is below 0.8 x the first 10's" has a wide margin;
    loss on the links only delays gradients (gloo is TCP), it cannot change them."""
    spec = write_spec(
        tmp_path / "ddp.yaml",
        {
            "name": "ddp",
            "topology": {"kind": "fat-tree", "k": 4, "tiers": {"core": {"loss_pct": 1}}},
            "jobs": [
                {
                    "name": "ddp",
                    "command": ["{python}", str(EXAMPLE), "--iterations", "60"],
                    "workers": 4,
                    "timeout_s": 400,
                }
            ],
        },
    )
    out = tmp_path / "run"
    result = run_cli(["run", str(spec), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    job = pd.read_csv(out / "jobs.csv").iloc[0]
    assert job["status"] == "ok" and job["exit_codes"] == "0 0 0 0"
    assert job["jct_s"] > 0
    its = pd.read_csv(out / "iterations.csv")
    assert sorted(its["rank"].unique()) == [0, 1, 2, 3]
    assert len(its) == 4 * 60  # one row per rank per iteration, nothing lost
    by_iteration = its.groupby("iteration")["train_loss"].mean()
    assert by_iteration.iloc[-10:].mean() < 0.8 * by_iteration.iloc[:10].mean()
    assert (its["world_size"] == 4).all()  # the script's own key became a column
    assert "trained 60 iterations on 4 ranks" in (out / "logs" / "ddp-rank0-h1.log").read_text()


FAILING = """\
import json, os, sys, time
rank = int(os.environ["RANK"])
for i in range(3):
    print(json.dumps({"iteration": i, "loss": 1.0 / (i + 1)}), flush=True)
    time.sleep(0.2)
if rank == 2:
    print("rank 2 gives up", file=sys.stderr)
    sys.exit(3)
time.sleep(120)
"""


def test_failing_rank_and_timeouts_end_cleanly(tmp_path, no_leftovers):
    """Three jobs side by side: a script that exits 3 on rank 2 (the job fails, its
    error names rank 2 and its stderr; the other ranks are stopped), a command that
    outlives timeout_s and a built-in job that does (both `timeout`). The run ends in
    well under the 120 s the scripts would otherwise take, with nothing left."""
    (tmp_path / "fail.py").write_text(FAILING)
    spec = write_spec(
        tmp_path / "fail.yaml",
        {
            "name": "fail",
            "topology": {"kind": "fat-tree", "k": 4},
            "jobs": [
                {"name": "f", "command": "{python} fail.py", "workers": 4},
                {"name": "slow", "command": ["sleep", "120"], "workers": 2, "timeout_s": 3},
                {"name": "mlp", "workers": 2, "iterations": 100_000, "timeout_s": 5},
            ],
        },
    )
    out = tmp_path / "run"
    result = run_cli(["run", str(spec), "--out", str(out)], timeout=100)
    assert result.returncode != 0
    jobs = pd.read_csv(out / "jobs.csv").set_index("job")
    assert jobs.loc["f", "status"] == "failed"
    assert jobs.loc["f", "error"] == "rank2@h9 exited 3: rank 2 gives up"
    assert jobs.loc["f", "exit_codes"].split()[2] == "3"
    assert jobs.loc["slow", "status"] == "timeout"
    assert jobs.loc["mlp", "status"] == "timeout"
    its = pd.read_csv(out / "iterations.csv")
    assert len(its[its["job"] == "f"]) == 12  # 3 metric lines from each of 4 ranks
    assert its[its["job"] == "mlp"]["iteration"].max() > 0  # it trained until stopped
