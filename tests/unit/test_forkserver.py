"""The forkserver against the exec path, on loopback in the root namespace (no Mininet):
the same roles give bit-identical records, failures come back as exit codes with the
traceback in the child's log, and no child outlives its forkserver."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.errors import TestbedError
from testbed.jobs.forkserver import ForkServer
from testbed.jobs.launch import PROCESS_ENV
from testbed.ledger import Ledger, alive, identity
from testbed.spec.schema import JobSpec
from testbed.training.role import RoleConfig

# setns() needs CAP_SYS_ADMIN even to re-enter the namespace a process is already in.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root")

JOB = JobSpec.model_validate(
    {"name": "j", "workers": 2, "servers": 1, "iterations": 15, "eval_every": 5}
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_files(tmp: Path, tag: str) -> list[Path]:
    """Server then worker role files of a 2-worker PS job over loopback."""
    ports = [free_port() for _ in range(3)]
    servers, workers = [["127.0.0.1", ports[0]]], [["127.0.0.1", p] for p in ports[1:]]
    roles = [("server", 0, ports[0])] + [("worker", r, ports[1 + r]) for r in range(2)]
    paths = []
    for role, rank, port in roles:
        path = tmp / f"{tag}-{role}{rank}.json"
        RoleConfig(
            job=JOB.model_dump(mode="json"),
            role=role,
            rank=rank,
            host="lo",
            ip="127.0.0.1",
            seed=7,
            records=str(tmp / f"{tag}-{role}{rank}.jsonl"),
            servers=servers,
            workers=workers,
            port=port,
        ).save(path)
        paths.append(path)
    return paths


def records(path: Path) -> list[dict]:
    """Records without their wall-clock times (the only field allowed to differ)."""
    keep = ("type", "iteration", "rank", "train_loss", "test_accuracy", "bytes_sent", "bytes")
    return [
        {k: v for k, v in json.loads(line).items() if k in keep}
        for line in path.read_text().splitlines()
    ]


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setattr("testbed.ledger.STATE_DIR", tmp_path / "state")
    ledger = Ledger.open("forkserver-test", str(tmp_path))
    yield ledger
    ledger.release()  # kills whatever a failed test left running


@pytest.fixture
def forkserver(tmp_path, ledger):
    server = ForkServer([("digits", 7)], tmp_path / "forkserver.log", {**os.environ, **PROCESS_ENV})
    server.start(ledger)
    yield server
    server.stop()


def spawn(server: ForkServer, config: Path, ledger: Ledger):
    child = server.spawn(config, config.with_suffix(".log"), os.getpid(), {})
    ledger.add_process(child.pid)
    return child


def test_forked_roles_record_exactly_what_exec_roles_record(tmp_path, forkserver, ledger):
    execs = []
    for config in role_files(tmp_path, "exec"):
        execs.append(
            subprocess.Popen(
                [sys.executable, "-m", "testbed.training", str(config)],
                env={**os.environ, **PROCESS_ENV},
                start_new_session=True,
            )
        )
        ledger.add_process(execs[-1].pid)
    assert [p.wait(timeout=120) for p in execs] == [0, 0, 0]
    forked = [spawn(forkserver, c, ledger) for c in role_files(tmp_path, "fork")]
    assert [p.wait(timeout=120) for p in forked] == [0, 0, 0]
    for name in ("server0", "worker0", "worker1"):
        exec_records = records(tmp_path / f"exec-{name}.jsonl")
        assert exec_records == records(tmp_path / f"fork-{name}.jsonl"), name
    iterations = [r for r in records(tmp_path / "fork-worker0.jsonl") if r["type"] == "iteration"]
    assert len(iterations) == JOB.iterations


def test_child_has_its_own_session_and_dies_with_the_forkserver(tmp_path, forkserver, ledger):
    server_role = role_files(tmp_path, "lone")[0]  # a server that waits for workers forever
    child = spawn(forkserver, server_role, ledger)
    ident = identity(child.pid)
    assert os.getpgid(child.pid) == child.pid
    assert os.getsid(child.pid) == child.pid
    assert child.poll() is None
    os.kill(forkserver.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(ident) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(ident), "the child outlived its forkserver"
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_failing_child_reports_exit_code_and_traceback(tmp_path, forkserver, ledger):
    missing = tmp_path / "no-such-role.json"
    child = spawn(forkserver, missing, ledger)
    assert child.wait(timeout=30) == 1
    log = missing.with_suffix(".log").read_text()
    assert "FileNotFoundError" in log and str(missing) in log


def test_stop_kills_children_and_reports_them(tmp_path, forkserver, ledger):
    child = spawn(forkserver, role_files(tmp_path, "stop")[0], ledger)
    ident = identity(child.pid)
    forkserver.stop()
    assert not alive(ident)
    assert child.poll() == -signal.SIGKILL
    assert forkserver.exited == 0


def test_child_that_cannot_enter_its_namespace_is_a_clear_error(tmp_path, forkserver):
    config = role_files(tmp_path, "nons")[0]
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid with no process, hence no namespace to enter
    with pytest.raises(TestbedError, match=rf"could not fork {config.name}: .*/proc/{gone.pid}/ns"):
        forkserver.spawn(config, tmp_path / "nons.log", gone.pid, {})
    assert forkserver.exited is None  # the forkserver carries on


def test_relative_role_paths_work_in_a_host_with_its_own_mount_namespace(
    tmp_path, ledger, monkeypatch
):
    """`mnexec -n` gives every Mininet host its own mount namespace, and joining one
    moves a process to its root directory. A run's default directory is relative to
    where the user started the harness (results/<name>/<UTC>), so the quickstart's
    forked server once failed to open its role file. Here the forkserver starts in the
    role files' directory, and the roles join a process's private mount namespace."""
    monkeypatch.chdir(tmp_path)
    server = ForkServer([("digits", 7)], tmp_path / "fs.log", {**os.environ, **PROCESS_ENV})
    server.start(ledger)
    host = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "120"])
    ledger.add_process(host.pid)
    ours = os.stat("/proc/self/ns/mnt").st_ino
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{host.pid}/ns/mnt").st_ino == ours and time.monotonic() < deadline:
        time.sleep(0.01)  # unshare has not switched yet
    try:
        assert os.stat(f"/proc/{host.pid}/ns/mnt").st_ino != ours
        children = []
        for config in role_files(tmp_path, "rel"):
            relative = Path(config.name)  # relative to the forkserver's directory
            children.append(server.spawn(relative, Path(f"{config.stem}.log"), host.pid, {}))
            ledger.add_process(children[-1].pid)
        codes = [c.wait(timeout=120) for c in children]
        assert codes == [0, 0, 0], (tmp_path / "rel-server0.log").read_text()[-2000:]
    finally:
        server.stop()
        host.kill()
        host.wait()
