"""Integration tier: real Mininet + OVS + os-ken + PyTorch runs through the CLI.

Every harness a test starts goes through `start_cli` (or `run_cli`, built on it), which
registers the process. After each test, pass or fail, `_runs_are_dead_and_cleaned`
stops whatever is still running (SIGTERM, which the harness answers with a full
teardown; SIGKILL if that hangs) and releases the ledgers of dead harnesses, so one
failing test never leaves bridges that make the next one fail with "names already
exist".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.ledger import leftovers
from testbed.platform import probe
from tests.integration.leaks import new_leftovers, snapshot

TESTBED = [sys.executable, "-m", "testbed"]
RUN_TIMEOUT_S = 600
# A harness tears down a k=4 fat-tree in a few seconds; under TCG in the CI guest it
# takes several times that. After this long it is hung, and SIGKILL + ledger it is.
TERM_GRACE_S = 90

_started: list[subprocess.Popen] = []


def start_cli(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start `testbed ARGS...` in the background, registered for the after-test sweep."""
    proc = subprocess.Popen(
        [*TESTBED, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs
    )
    _started.append(proc)
    return proc


def run_cli(
    args: list[str], timeout: float = RUN_TIMEOUT_S, **popen_kwargs
) -> subprocess.CompletedProcess:
    """`testbed ARGS...` as a user would run it; a run still going at `timeout` is
    stopped (and torn down) before the test fails."""
    proc = start_cli(args, **popen_kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"`testbed {' '.join(args)}` still running after {timeout:.0f} s; stopped")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the harness tears its run down), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def release_dead_runs() -> list[str]:
    """What `testbed clean` does: release every ledger whose harness is gone."""
    return [item for ledger in leftovers() for item in ledger.release()]


def forwarding_planes() -> list[str]:
    """The `network.ports` values whose runs differ on this machine: where the OVS
    kernel module is loaded, `auto` takes the kernel datapath and ports do not apply."""
    if probe().ovs_kernel_module:
        return ["auto"]
    return ["packet"] + (["afxdp"] if "afxdp" in probe().ovs_port_types else [])


PLANES = forwarding_planes()


@pytest.fixture(params=PLANES, ids=[f"ports-{p}" for p in PLANES])
def ports(request) -> str:
    """Run the test once on each forwarding plane this machine offers."""
    return request.param


@pytest.fixture(autouse=True)
def _runs_are_dead_and_cleaned():
    yield
    while _started:
        stop(_started.pop())
    if os.geteuid() == 0:
        release_dead_runs()


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """One run of configs/quickstart.yaml as a user would start it: (process, run dir,
    what it left behind). Shared by the smoke tests and the stock-kernel test of the
    kernel datapath (which `auto` picks where the module is loaded), because under TCG
    in the CI guest each run costs about 6 minutes."""
    before = snapshot()
    # As the README starts it: no --out, so the run directory is results/quickstart/<UTC>
    # relative to where the user is (a forked server once could not open its role file
    # there: joining the host's mount namespace had moved it to /).
    home = tmp_path_factory.mktemp("quickstart")
    proc = run_cli(["run", str(Path("configs/quickstart.yaml").resolve())], cwd=home)
    runs = sorted((home / "results" / "quickstart").glob("*"))
    out = runs[-1] if runs else home / "results" / "quickstart" / "missing"
    return proc, out, new_leftovers(before, snapshot())


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def no_leftovers():
    """Fail the test if it leaves bridges, interfaces, processes, ledgers or nft tables."""
    before = snapshot()
    yield
    leaked = new_leftovers(before, snapshot())
    if leaked:
        # Remove them so one failure does not cascade into every later test.
        release_dead_runs()
        pytest.fail(f"run left behind: {leaked}")
