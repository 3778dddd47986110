"""CSV writers: tidy tables with the contract's columns, built from JSONL records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from testbed.results.rundir import create_run_dir
from testbed.results.tables import (
    ITERATION_COLUMNS,
    JOB_COLUMNS,
    JOB_STATE,
    MESSAGE_COLUMNS,
    write_tables,
)
from testbed.training.role import RecordWriter, snapshot_path

T0 = 1000.0


def fake_run(tmp_path, workers=2, iterations=3, truncate=False):
    """A run directory as a finished run leaves it: records, job state, metadata."""
    run_dir = create_run_dir("x", out=tmp_path / "run")
    (run_dir / "metadata.json").write_text(json.dumps({"t0_unix": T0}))
    (run_dir / "raw" / "a").mkdir()
    for rank in range(workers):
        path = run_dir / "raw" / "a" / f"worker{rank}.jsonl"
        lines = [{"type": "ready", "time": T0 + 5, "job": "a", "rank": rank}]
        for it in range(iterations):
            lines.append(
                {
                    "type": "iteration",
                    "time": T0 + 6 + it,
                    "job": "a",
                    "rank": rank,
                    "iteration": it,
                    "iter_s": 0.5,
                    "compute_s": 0.2,
                    "comm_s": 0.3,
                    "bytes_sent": 400,
                    "train_loss": 2.0 - it,
                    "test_accuracy": 0.5 + it / 10 if rank == 0 and it == iterations - 1 else None,
                }
            )
            lines.append(
                {
                    "type": "message",
                    "time": T0 + 6 + it,
                    "job": "a",
                    "iteration": it,
                    "src": "server0",
                    "dst": f"worker{rank}",
                    "kind": "pull",
                    "bytes": 400,
                    "fct_s": 0.01,
                    "delivered_fraction": 1.0,
                    "retransmitted_bytes": 0,
                    "transport": "tcp",
                }
            )
        text = "\n".join(json.dumps(line) for line in lines) + "\n"
        path.write_text(text + ('{"type": "iter' if truncate else ""))
    summary = [
        {
            "job": "a",
            "transport": "tcp",
            "sync": "ps",
            "model": "mlp",
            "dataset": "digits",
            "workers": workers,
            "servers": 1,
            "status": "ok",
            "launched_at": T0 + 1,
        }
    ]
    (run_dir / "raw" / "a" / JOB_STATE).write_text(json.dumps(summary[0]))
    return run_dir, summary


def test_tables_have_contract_columns_and_one_row_per_worker_iteration(tmp_path):
    run_dir, summary = fake_run(tmp_path)
    frames = write_tables(run_dir)
    its = pd.read_csv(run_dir / "iterations.csv")
    assert list(its.columns) == ITERATION_COLUMNS
    assert len(its) == 2 * 3
    assert its.groupby(["rank", "iteration"]).size().eq(1).all()
    assert its["time_s"].min() == 6
    assert list(pd.read_csv(run_dir / "messages.csv").columns) == MESSAGE_COLUMNS
    jobs = pd.read_csv(run_dir / "jobs.csv")
    assert list(jobs.columns)[: len(JOB_COLUMNS)] == JOB_COLUMNS
    row = jobs.iloc[0]
    assert row["iterations"] == 3
    assert row["jct_s"] == 3  # first ready at +5, last iteration at +8
    assert row["startup_s"] == 4
    assert row["final_accuracy"] == 0.7
    assert frames["jobs"].shape[0] == 1


def test_tables_tolerate_a_half_written_line(tmp_path):
    run_dir, summary = fake_run(tmp_path, truncate=True)
    write_tables(run_dir)
    assert len(pd.read_csv(run_dir / "iterations.csv")) == 6


def test_empty_run_still_writes_headers(tmp_path):
    run_dir = create_run_dir("x", out=tmp_path / "run")
    (run_dir / "metadata.json").write_text(json.dumps({"t0_unix": T0}))
    write_tables(run_dir)
    assert list(pd.read_csv(run_dir / "iterations.csv").columns) == ITERATION_COLUMNS
    assert list(pd.read_csv(run_dir / "jobs.csv").columns) == JOB_COLUMNS


def test_divergence_is_the_largest_relative_distance_from_worker0(tmp_path):
    run_dir, _ = fake_run(tmp_path, workers=3)
    records = run_dir / "raw" / "a" / "worker0.jsonl"
    for rank, params in enumerate(([3.0, 4.0], [3.0, 4.0], [3.0, 4.5])):
        path = snapshot_path(records.with_name(f"worker{rank}.jsonl"), 2)
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.array(params, np.float32))
    its = write_tables(run_dir)["iterations"].set_index(["iteration", "rank"])
    assert its.loc[(2, 0), "param_divergence"] == 0.5 / 5  # |(0, 0.5)| / |(3, 4)|
    assert its["param_divergence"].notna().sum() == 1  # rank 0, the evaluated iteration


def test_record_writer_appends_json_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    writer = RecordWriter(str(path))
    writer.write("iteration", job="a", rank=0)
    writer.write("message", job="a")
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["iteration", "message"]
    assert all("time" in line for line in lines)


def test_a_missing_replica_snapshot_leaves_divergence_empty_and_is_named(tmp_path):
    """Worker 2 reached the evaluated iteration but its snapshot is gone: comparing
    only workers 0 and 1 (identical) would read 0, so there is no figure at all."""
    from testbed.results.fidelity import assess

    run_dir, _ = fake_run(tmp_path, workers=3)
    records = run_dir / "raw" / "a" / "worker0.jsonl"
    for rank, params in enumerate(([3.0, 4.0], [3.0, 4.0], [3.0, 4.5])):
        path = snapshot_path(records.with_name(f"worker{rank}.jsonl"), 2)
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.array(params, np.float32))
    snapshot_path(records.with_name("worker2.jsonl"), 2).unlink()
    frames = write_tables(run_dir)
    assert frames["iterations"]["param_divergence"].isna().all()
    fidelity = assess(run_dir, [], frames["param_divergence"])
    assert fidelity["snapshot_gaps"] == ["a iteration 2 (worker2)"]
    assert not fidelity["trustworthy"]
    assert "worker2" in fidelity["reasons"][0]
