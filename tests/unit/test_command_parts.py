"""A command job's pieces without a network: torchrun's environment and the JSON
lines that become iterations.csv rows."""

from __future__ import annotations

from pathlib import Path

from testbed.jobs.command import metrics_record, torchrun_env
from testbed.results.tables import iterations_table
from testbed.spec.placement import Placement
from testbed.spec.schema import JobSpec


def test_torchrun_environment():
    job = JobSpec(name="j", command=("prog",), workers=3)
    placement = Placement("j", (), ("h4", "h2", "h9"))
    ips = {"h4": "10.1.0.2", "h2": "10.0.0.3", "h9": "10.2.0.2"}
    env = torchrun_env(job, 2, placement, ips, Path("/r"))
    assert env["MASTER_ADDR"] == "10.1.0.2"  # the first host's
    assert (env["RANK"], env["WORLD_SIZE"], env["GROUP_RANK"]) == ("2", "3", "2")
    assert (env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("0", "1")
    assert env["GLOO_SOCKET_IFNAME"] == "h9-eth0"
    assert env["TESTBED_JOB"] == "j" and env["TESTBED_RUN_DIR"] == "/r"
    assert int(env["MASTER_PORT"]) > 1024


def test_metric_lines():
    record = metrics_record('{"iteration": 3, "loss": 0.5, "rank": 9, "hist": [1, 2]}', "j", 1, 7.0)
    assert record == {
        "type": "iteration", "time": 7.0, "job": "j", "rank": 1, "iteration": 3,
        "loss": 0.5, "script_rank": 9, "hist": "[1, 2]",
    }  # fmt: skip
    for line in ("epoch 3 done", "[1, 2]", '{"loss": 1}', '{"iteration": "3"}', "{bad json"):
        assert metrics_record(line, "j", 0, 0.0) is None


def test_script_keys_become_columns_of_iterations_csv():
    records = [
        metrics_record('{"iteration": 0, "train_loss": 2.0, "lr": 0.1}', "c", 0, 11.0),
        {"type": "iteration", "job": "b", "rank": 0, "iteration": 0, "iter_s": 0.2, "time": 12.0},
    ]
    df = iterations_table(records, t0=10.0)
    assert list(df.columns)[-1] == "lr" and "train_loss" in df.columns
    rows = df.set_index("job")
    assert rows.loc["c", "lr"] == 0.1 and rows.loc["c", "time_s"] == 1.0
    assert rows.loc["b", "iter_s"] == 0.2 and rows.isna().loc["b", "lr"]
