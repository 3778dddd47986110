"""The ledger removes exactly what a run recorded, and only for dead runs."""

from __future__ import annotations

import subprocess
import time

import pytest

from testbed import ledger as ledger_mod
from testbed.ledger import Ledger, alive, identity, leftovers


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "STATE_DIR", tmp_path / "state")
    # Only process handling is exercised here: no OVS or interface commands.
    monkeypatch.setattr(ledger_mod, "_ovs", lambda args: "")
    return tmp_path / "state"


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_live_owner_is_not_a_leftover():
    Ledger.open("mine", "/tmp/run")
    assert leftovers() == []


def test_dead_owner_is_a_leftover_and_release_kills_its_processes():
    proc = sleeper()
    dead = subprocess.Popen(["true"])
    dead.wait()
    led = Ledger.open("crashed", "/tmp/run")
    led.owner = [dead.pid, 1]  # the harness that owned it has exited
    led.add_process(proc.pid)
    [found] = leftovers()
    assert found.run_id == "crashed"
    removed = found.release()
    proc.wait(timeout=10)
    assert removed == [f"process group {proc.pid}"]
    assert not found.path.exists()


def test_pid_reuse_is_not_killed():
    proc = sleeper()
    led = Ledger.open("old", "/tmp/run")
    led.processes.append([proc.pid, identity(proc.pid)[1] + 1])  # same pid, other start time
    assert led.release() == []
    assert proc.poll() is None
    proc.kill()
    proc.wait()


def test_alive_tracks_exit():
    proc = sleeper()
    ident = identity(proc.pid)
    assert alive(ident)
    proc.kill()
    proc.wait()
    time.sleep(0.05)
    assert not alive(ident)


def test_a_controller_interrupted_before_it_was_recorded_is_still_stopped(tmp_path):
    """Ctrl-C between Popen and recording the controller's identity once left it
    running after a study run (stop raised a TypeError instead). Its session is its
    own, so stop kills that group."""
    import subprocess

    from testbed.control import ControllerProcess

    (tmp_path / "raw").mkdir()
    (tmp_path / "logs").mkdir()
    controller = ControllerProcess({}, {}, "ecmp", tmp_path, ledger=None)
    controller.popen = subprocess.Popen(["sleep", "60"], start_new_session=True)
    assert controller.ident == []
    controller.stop()
    assert controller.popen.returncode == -9
