"""CSV writers: tidy tables with the contract's columns, built from JSONL records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from testbed.layout import snapshot_path
from testbed.results.rundir import create_run_dir
from testbed.results.tables import (
    ITERATION_COLUMNS,
    JOB_COLUMNS,
    JOB_STATE,
    MESSAGE_COLUMNS,
    write_tables,
)
from testbed.training.role import RecordWriter

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


def _job_records(fcts: list[float], accuracies: dict[int, float], compute_s: float = 0.2):
    """One ps job's records: ready at 5 s, iteration i ends at 6 + i, one message of
    each FCT in `fcts` per iteration, accuracies at the iterations given."""
    records = [{"type": "ready", "time": 5.0, "job": "a", "rank": 0}]
    for it in range(10):
        records.append({"type": "iteration", "time": 6.0 + it, "job": "a", "rank": 0,
                        "iteration": it, "iter_s": 1.0, "compute_s": compute_s,
                        "test_accuracy": accuracies.get(it)})  # fmt: skip
        records += [{"type": "message", "job": "a", "kind": "push", "fct_s": f} for f in fcts]
    return records


def test_fct_and_eq1_columns_follow_the_papers_equation():
    """FCTs 10 ms x 99 and 1 s x 1 per iteration: mean 19.9 ms, p99 ~1 s; eq. 1 for a
    parameter server is iterations x (compute + 2 x FCT); for ring allreduce of 4
    workers the FCT counts 3 times per phase; an aggregation tree has no eq. 1."""
    from testbed.results.tables import jobs_table

    records = _job_records([0.01] * 99 + [1.0], {})
    job = {"job": "a", "sync": "ps", "workers": 4, "aggregation": "none"}
    row = jobs_table(records, [job]).iloc[0]
    approx = pytest.approx  # float sums, not an allowance: the figures are exact
    assert row["fct_mean_s"] == approx(0.0199)
    assert row["fct_p99_s"] == approx(np.percentile([0.01] * 990 + [1.0] * 10, 99))
    assert row["jct_eq1_mean_s"] == approx(10 * (0.2 + 2 * 0.0199))
    assert row["jct_eq1_tail_s"] == approx(10 * (0.2 + 2 * row["fct_p99_s"]))
    ring = jobs_table(records, [{**job, "sync": "allreduce"}]).iloc[0]
    assert ring["jct_eq1_mean_s"] == approx(10 * (0.2 + 2 * 3 * 0.0199))
    tree = jobs_table(records, [{**job, "aggregation": "rack"}]).iloc[0]
    assert pd.isna(tree["jct_eq1_mean_s"]) and tree["fct_mean_s"] == approx(0.0199)


def test_time_to_target_is_the_first_evaluation_that_reached_it():
    """Accuracies 0.5, 0.8, 0.7, 0.9 at iterations 1, 3, 5, 7; target 0.75: reached at
    iteration 3 (4 iterations), which ended 4 s after the first worker was ready.
    A target never reached leaves both columns empty; no target, too."""
    from testbed.results.tables import jobs_table

    records = _job_records([0.01], {1: 0.5, 3: 0.8, 5: 0.7, 7: 0.9})
    job = {"job": "a", "sync": "ps", "workers": 1, "target_accuracy": 0.75}
    row = jobs_table(records, [job]).iloc[0]
    assert (row["tta_s"], row["iterations_to_target"]) == (4.0, 4)
    for unreached in ({**job, "target_accuracy": 0.95}, {**job, "target_accuracy": None}):
        row = jobs_table(records, [unreached]).iloc[0]
        assert pd.isna(row["tta_s"]) and pd.isna(row["iterations_to_target"])
