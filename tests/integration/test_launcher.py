"""The forkserver launcher on a real network: it trains exactly what the exec launcher
trains, and a crashed child is reported with its host and role, then torn down."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, start_cli, write_spec
from tests.integration.leaks import new_leftovers, snapshot

pytestmark = pytest.mark.integration


def test_exec_and_fork_launchers_train_identically(quickstart, tmp_path):
    """Seeding is per process and TCP delivers every byte, so the two launchers must
    give the same losses and the same final accuracy (asserted to 4 digits; in fact
    bit-identical). The quickstart fixture is the fork run."""
    proc, fork_out, _ = quickstart
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((fork_out / "metadata.json").read_text())["forkserver_ready_s"] > 0
    exec_out = tmp_path / "exec"
    args = ["run", "configs/quickstart.yaml", "--set", "launcher=exec", "--out", str(exec_out)]
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = {out: pd.read_csv(out / "jobs.csv").iloc[0] for out in (fork_out, exec_out)}
    assert round(jobs[fork_out]["final_accuracy"], 4) == round(jobs[exec_out]["final_accuracy"], 4)
    losses = [
        pd.read_csv(out / "iterations.csv").sort_values(["rank", "iteration"])["train_loss"]
        for out in (fork_out, exec_out)
    ]
    assert losses[0].tolist() == losses[1].tolist()


def find_process(role_file: Path, label: str, timeout_s: float = 60) -> int:
    """The pid of the training process for `role_file`: a forked child is named `label`
    (e.g. ``worker1@h2``) by the forkserver, an exec'd one has the file in its argv."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if (entry / "comm").read_text().strip() == label or str(role_file).encode() in argv:
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.2)
    pytest.fail(f"no process for {label}")


def wait_for_training(proc, records: Path, timeout_s: float = 180) -> None:
    """Until `records` holds an iteration; fail with the harness's stderr if it ends."""
    deadline = time.monotonic() + timeout_s
    while not (records.exists() and '"iteration"' in records.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)


@pytest.mark.parametrize("launcher", ["fork", "exec"])
def test_crashed_child_is_reported_with_host_and_role(tmp_path, launcher):
    """SIGKILL one worker mid-training: the job fails naming that worker and its host
    (not the server that lost its connection a moment later), and teardown leaves
    nothing behind."""
    spec = {
        "name": "crash",
        "launcher": launcher,
        "topology": {"kind": "dumbbell", "hosts_per_side": 2},
        "jobs": [{"name": "j", "workers": 2, "servers": 1, "iterations": 1_000_000}],
    }
    before = snapshot()
    out = tmp_path / "run"
    proc = start_cli(["run", str(write_spec(tmp_path / "crash.yaml", spec)), "--out", str(out)])
    wait_for_training(proc, out / "raw" / "j" / "worker1.jsonl")
    role_file = out / "raw" / "j" / "worker1.json"
    host = json.loads(role_file.read_text())["host"]
    os.kill(find_process(role_file, f"worker1@{host}"), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    job = pd.read_csv(out / "jobs.csv").iloc[0]
    assert job["status"] == "failed"
    assert job["error"].startswith(f"worker1@{host} exited -9"), job["error"]
    assert json.loads((out / "metadata.json").read_text())["status"] == "failed"
    assert new_leftovers(before, snapshot()) == {}
