"""MLNET aggregation trees on a real network: the same mathematics as direct PS
traffic, per-tier bytes measured by the switches' per-job counters, blt on tree edges
under loss, and a dead aggregator named in the job's error."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import run_cli, start_cli, write_spec
from tests.integration.leaks import new_leftovers, snapshot
from tests.integration.test_launcher import find_process, wait_for_training

pytestmark = pytest.mark.integration

ITERATIONS = 40


def spec(name, aggregation, transport="tcp", link=None, iterations=ITERATIONS):
    """One PS job, 6 workers + 1 server packed on h1..h7 of a k=4 fat-tree: racks
    {h1 server, h2}, {h3, h4} in pod 0, {h5, h6}, {h7} in pod 1."""
    return {
        "name": name,
        "topology": {"kind": "fat-tree", "k": 4, "tiers": {"host": link or {}}},
        "jobs": [
            {
                "name": "j",
                "workers": 6,
                "servers": 1,
                "placement": "pack",
                "aggregation": aggregation,
                "transport": transport,
                "iterations": iterations,
                "eval_every": iterations,
                "momentum": 0.5,
            }
        ],
    }


def run(tmp_path, name, body):
    out = tmp_path / name
    proc = run_cli(["run", str(write_spec(tmp_path / f"{name}.yaml", body)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def final_params(out, rank=0):
    return np.load(out / "raw" / "j" / "params" / f"it{ITERATIONS - 1:06d}-worker{rank}.npy")


def test_rack_tree_trains_what_direct_pushes_train_and_saves_edge_bytes(tmp_path, no_leftovers):
    """TCP, no loss, same seed: `rack` must end with the parameters of `none` up to float
    rounding. The tolerance, 1e-4 relative, is far above rounding (the server adds the
    same six gradients in another order: ~1e-7 relative per step, 40 steps) and far
    below any real difference (one step of lr 0.1 moves the parameters by ~1e-2).

    Bytes: `none` sends 5 workers' pushes and pulls over the edge tier (h3..h7 are
    off the server's rack) and 3 over the core (h5..h7); `rack` 3 and 2 (the
    aggregators h3 and h5, and h7 alone). The measured ratios must be 5/3 and 3/2
    within 15% (headers and ACKs are counted, the same share in both runs; measured
    here: 1.664 and 1.497)."""
    direct = run(tmp_path, "none", spec("none", "none"))
    rack = run(tmp_path, "rack", spec("rack", "rack"))
    a, b = final_params(direct), final_params(rack)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-4
    for rank in range(1, 6):  # every replica got the same multicast
        np.testing.assert_array_equal(final_params(rack, rank), b)
    jobs = {
        name: pd.read_csv(out / "jobs.csv").iloc[0]
        for name, out in [("none", direct), ("rack", rack)]
    }
    assert jobs["rack"]["aggregation"] == "rack" and jobs["none"]["aggregation"] == "none"
    for tier, expected in (("edge", 5 / 3), ("core", 3 / 2)):
        ratio = jobs["none"][f"bytes_{tier}_tier"] / jobs["rack"][f"bytes_{tier}_tier"]
        assert expected / 1.15 <= ratio <= expected * 1.15, (tier, ratio)
    trees = json.loads((rack / "metadata.json").read_text())["trees"]["j"]
    assert len(trees) == 1 and sorted(trees[0]["server0@h1"]) == [
        "worker0@h2",
        "worker1@h3",
        "worker3@h5",
        "worker5@h7",
    ]


def test_blt_tree_learns_under_host_loss_and_counts_add_up(tmp_path, no_leftovers):
    """blt (loss_bound 0.1) with 5% loss on every host link. Every message must deliver
    >= 90% of its entries; at the server, the per-entry count must never exceed the 6
    workers (a double-counted sum would), must fall below 6 on average in some
    iteration (loss did reach the counts), and stays >= 0.6 x 6: a leaf's entry
    crosses two edges, each delivering >= 0.9 of a message whose count words are
    themselves exposed to the bound (0.9 x 0.9 x 0.8 = 0.65 in the worst case).
    Accuracy floor 0.8, as for every transport in test_transports."""
    out = run(
        tmp_path,
        "blt",
        spec("blt", "rack", {"kind": "blt", "loss_bound": 0.1}, {"loss_pct": 5}, 150),
    )
    job = pd.read_csv(out / "jobs.csv").iloc[0]
    assert job["status"] == "ok" and job["final_accuracy"] > 0.8
    messages = pd.read_csv(out / "messages.csv")
    assert (messages["delivered_fraction"] >= 0.9).all()
    records = [json.loads(line) for line in (out / "raw" / "j" / "server0.jsonl").open()]
    counts = pd.DataFrame([r for r in records if r["type"] == "aggregate"])
    assert len(counts) == 150
    assert (counts["count_max"] <= 6).all()
    assert (counts["count_mean"] < 6).any()
    assert (counts["count_mean"] >= 0.6 * 6).all()


def test_dead_aggregator_fails_the_job_naming_it(tmp_path, no_leftovers):
    """SIGKILL the aggregator of the {h3, h4} rack mid-training: the job fails, its
    error names the aggregator, its host and its tree, and nothing is left behind."""
    before = snapshot()
    body = spec("agg-crash", "rack", iterations=1_000_000)
    out = tmp_path / "run"
    proc = start_cli(["run", str(write_spec(tmp_path / "crash.yaml", body)), "--out", str(out)])
    wait_for_training(proc, out / "raw" / "j" / "worker1.jsonl")
    os.kill(find_process(out / "raw" / "j" / "worker1.json", "worker1@h3"), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    job = pd.read_csv(out / "jobs.csv").iloc[0]
    assert job["status"] == "failed"
    assert job["error"].startswith("aggregator worker1@h3 (tree of server0) exited -9")
    assert new_leftovers(before, snapshot()) == {}
