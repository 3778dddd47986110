"""Cluster job processes, started the way `testbed.jobs.remote` starts them on any
server, here with no ssh in front (the first server's case; a remote server runs the
same words after ssh). Real processes, real pid files and real signals."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest

from testbed import ledger as ledger_mod
from testbed.jobs import remote
from testbed.ledger import LOCAL, Ledger, ServerPart, alive, identity

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mnexec -a needs root")


@pytest.fixture
def scratch():
    """A scratch directory of a run that exists for this test only."""
    path = remote.scratch_dir(f"unit-{uuid.uuid4().hex[:8]}")
    yield path
    remote.remove_dir([], path)


def sleeper(scratch, tmp_path, marker: str, code: str = "import time; time.sleep(60)"):
    pidfile = str(scratch / f"{marker}.pid")
    remote.put_files([], {pidfile: b""})
    argv = [sys.executable, "-c", code, marker]
    proc = remote.start([], os.getpid(), argv, {"X": "1"}, pidfile, marker, tmp_path / "log")
    deadline = time.monotonic() + 10
    while not Path(pidfile).read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, int(Path(pidfile).read_text())


def test_a_process_runs_in_a_session_of_its_own_and_stop_kills_it(scratch, tmp_path):
    proc, pid = sleeper(scratch, tmp_path, "role-a.json")
    assert os.getsid(pid) == pid  # its group is what `stop` and `testbed clean` kill
    assert proc.poll() is None
    proc.stop()
    assert proc.poll() not in (None, 0)
    assert not alive(identity(pid))


def test_the_exit_code_and_output_come_back(scratch, tmp_path):
    code = "import os, sys; print('env', os.environ['X']); sys.exit(3)"
    proc, _ = sleeper(scratch, tmp_path, "role-b.json", code)
    assert proc.wait(30) == 3
    assert (tmp_path / "log").read_text().strip() == "env 1"


def test_files_go_and_come_back_and_a_missing_one_is_named(scratch, tmp_path):
    there = str(scratch / "raw" / "j" / "worker1.jsonl")
    remote.put_files([], {there: b'{"it": 1}\n'})
    home = tmp_path / "worker1.jsonl"
    gone = str(scratch / "raw" / "j" / "worker2.jsonl")
    missing = remote.get_files([], {there: home, gone: tmp_path / "w2"})
    assert home.read_bytes() == b'{"it": 1}\n'
    assert missing == [gone]


def test_only_scratch_directories_are_removed():
    with pytest.raises(ValueError):
        remote.remove_dir([], PurePosixPath("/tmp"))
    with pytest.raises(ValueError):
        remote.remove_dir([], PurePosixPath("/tmp/mlnet-testbed"))


def test_a_server_part_kills_its_pidfiles_processes_only(scratch, tmp_path, monkeypatch):
    """A crashed cluster run's processes are found by pid file; a pid file whose pid now
    runs something else (its marker absent) is left alone, as is every other dir."""
    monkeypatch.setattr(ledger_mod, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(ledger_mod, "_ovs", lambda args: "")
    ours, ours_pid = sleeper(scratch, tmp_path, "role-c.json")
    other, other_pid = sleeper(scratch, tmp_path, "role-d.json")
    forged = Path(scratch, "forged.pid")
    forged.write_text(str(other_pid))  # holds a live pid, without that process's marker
    ledger = Ledger.open("unit-part", str(tmp_path))
    ledger.add_on_server(
        LOCAL,
        pidfiles=[[str(scratch / "role-c.json.pid"), "role-c.json"], [str(forged), "role-c.json"]],
        dirs=[str(scratch), "/var/tmp"],
    )
    removed = ledger.release()
    assert f"process group {ours_pid}" in removed and f"directory {scratch}" in removed
    assert not alive(identity(ours_pid)) and alive(identity(other_pid))
    assert Path("/var/tmp").exists()
    os.killpg(other_pid, signal.SIGKILL)  # its pid file went with the scratch directory
    assert other.wait(10) and ours.wait(10)


def test_a_ledger_names_only_known_kinds():
    with pytest.raises(AttributeError):
        Ledger("x", "/tmp/x").add_on_server(LOCAL, sockets=["a"])
    assert set(ServerPart().__dict__) == {"bridges", "interfaces", "processes", "pidfiles", "dirs"}
