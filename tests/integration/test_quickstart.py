"""End to end: the quickstart-sized run on a k=4 fat-tree with 4 workers, 1 server
(the `quickstart` fixture in conftest runs it once per session)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from testbed.network.monitor import COLUMNS as LINK_COLUMNS
from testbed.platform import probe
from testbed.results.tables import ITERATION_COLUMNS, JOB_COLUMNS, write_tables

pytestmark = [pytest.mark.integration, pytest.mark.smoke]

ACCURACY_FLOOR = 0.8  # digits MLP reaches ~0.92 after 200 synchronous steps with seed 1


def test_run_succeeds_and_prints_run_dir_last(quickstart):
    proc, out, _ = quickstart
    assert proc.returncode == 0, proc.stderr[-2000:]
    # relative to the directory it was started in, like the default results root
    assert proc.stdout.strip().splitlines()[-1] == str(out.relative_to(out.parents[2]))
    assert "final accuracy" in proc.stdout  # the summary table


def test_metadata_records_the_run(quickstart):
    _, out, _ = quickstart
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "ok"
    assert 0 < meta["network_ready_s"] <= meta["reachable_s"] < meta["duration_s"]
    assert meta["platform"]["datapath"] in ("user", "kernel")
    # the forwarding plane `auto` took is the platform's own choice for 80 switch ports
    expected = probe().ports("auto", meta["platform"]["datapath"], 80)[0]
    assert meta["platform"]["ports"] == expected, meta["platform"]["ports_reason"]
    # written after the teardown ended, and the teardown took time after the run's start
    assert 0 < meta["teardown_s"] < meta["duration_s"]
    assert meta["placement"]["mlp"]["servers"] and len(meta["placement"]["mlp"]["workers"]) == 4
    assert meta["versions"]["torch"] != "missing"
    for name in ("spec.yaml", "iterations.csv", "jobs.csv", "messages.csv", "logs/controller.log"):
        assert (out / name).exists(), name
    assert len(list((out / "logs").glob("mlp-*.log"))) == 5


def test_iterations_csv_one_row_per_worker_per_iteration(quickstart):
    _, out, _ = quickstart
    its = pd.read_csv(out / "iterations.csv")
    assert list(its.columns) == ITERATION_COLUMNS
    assert len(its) == 4 * 200
    assert its.groupby(["rank", "iteration"]).size().eq(1).all()
    assert (its["comm_s"] > 0).all()
    # bytes_sent is the worker's wire: its push (the gradient, sent before its pull can
    # come back, so within the iteration) plus headers and ACKs, never less.
    pushes = pd.read_csv(out / "messages.csv").query("kind == 'push'")
    assert pushes["bytes"].nunique() == 1
    gradient = pushes["bytes"].iloc[0]
    assert (its["bytes_sent"] > gradient).all(), its["bytes_sent"].min()


def test_accuracy_rises_above_threshold(quickstart):
    _, out, _ = quickstart
    its = pd.read_csv(out / "iterations.csv")
    acc = its.dropna(subset=["test_accuracy"]).sort_values("iteration")["test_accuracy"]
    assert acc.iloc[-1] > ACCURACY_FLOOR
    assert acc.iloc[-1] > acc.iloc[0]  # it learned during the run, not before it
    jobs = pd.read_csv(out / "jobs.csv")
    assert list(jobs.columns)[: len(JOB_COLUMNS)] == JOB_COLUMNS
    assert jobs.loc[0, "status"] == "ok" and jobs.loc[0, "final_accuracy"] > ACCURACY_FLOOR


def test_traffic_really_crossed_the_emulated_network(quickstart):
    """Messages carry the whole model both ways; the PS and workers sit in different pods."""
    _, out, _ = quickstart
    msgs = pd.read_csv(out / "messages.csv")
    assert set(msgs["kind"]) == {"push", "pull"}
    assert len(msgs) == 2 * 4 * 200
    assert (msgs["delivered_fraction"] == 1.0).all()
    meta = json.loads((out / "metadata.json").read_text())
    hosts = meta["placement"]["mlp"]["servers"] + meta["placement"]["mlp"]["workers"]
    pods = {meta["hosts"][h].split(".")[1] for h in hosts}
    assert len(pods) == 4


def test_links_are_sampled_and_summarised(quickstart):
    _, out, _ = quickstart
    links = pd.read_csv(out / "links.csv")
    assert list(links.columns) == LINK_COLUMNS
    # Counters are cumulative, sampled every `results.sample_s` (1 s) while the job runs
    # and once more at the end: at least 3 samples, the last after the last iteration.
    times = sorted(links["time_s"].unique())
    assert len(times) >= 3
    assert (pd.Series(times).diff().iloc[1:-1] >= 0.99).all()
    assert times[-1] >= pd.read_csv(out / "iterations.csv")["time_s"].max()
    assert links["direction"].nunique() == 96  # 48 links x 2 directions
    last = links[links["time_s"] == links["time_s"].max()].set_index("direction")
    # the parameter server's host link carried every pull: 4 workers x 200 x ~19 kB
    server_link = last.loc["h1->e0_0"]
    assert server_link["tx_bytes"] > 4 * 200 * 19_000
    assert (last["loss_drops"] == 0).all()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["platform"]["loss_backend"] in ("netem", "nftables")
    busy = {entry["direction"]: entry for entry in meta["links"]}
    assert busy["h1->e0_0"]["peak_mbps"] <= 100 * 1.05  # never above the shaped rate
    assert meta["fidelity"]["loss_outside_familywise_ci99"] == []  # no loss configured


def test_fidelity_is_recorded_with_cpu_samples(quickstart):
    _, out, _ = quickstart
    fidelity = json.loads((out / "metadata.json").read_text())["fidelity"]
    cpu = pd.read_csv(out / "cpu.csv")
    assert {"machine", "harness", "controller", "job:mlp"} <= set(cpu["source"])
    assert 0 < fidelity["cpu_busy_p50_pct"] <= fidelity["cpu_busy_p95_pct"] <= 100
    assert fidelity["trustworthy"] == (not fidelity["reasons"])
    assert (pd.read_csv(out / "links.csv")["backlog_pkts"] >= 0).all()


def test_replicas_agree_at_every_evaluation(quickstart):
    """Parameter server over TCP: every worker pulls the same parameters."""
    _, out, _ = quickstart
    its = pd.read_csv(out / "iterations.csv")
    divergence = its.dropna(subset=["param_divergence"])
    assert len(divergence) == 10  # eval_every 20 of 200 iterations
    assert (divergence["param_divergence"] == 0).all()


def test_tables_are_a_function_of_the_run_directory(quickstart, tmp_path):
    """Delete the tables of a copy of the run, rebuild them from the directory alone."""
    _, out, _ = quickstart
    copy = shutil.copytree(out, tmp_path / "copy")
    names = ("iterations", "messages", "jobs")
    before = {name: pd.read_csv(copy / f"{name}.csv") for name in names}
    for name in names:
        (copy / f"{name}.csv").unlink()
    write_tables(copy)
    for name in names:
        pd.testing.assert_frame_equal(pd.read_csv(copy / f"{name}.csv"), before[name])


def test_nothing_of_the_run_remains(quickstart):
    _, _, leaked = quickstart
    assert leaked == {}
