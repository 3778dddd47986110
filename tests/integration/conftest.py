"""Integration tier: real Mininet + OVS + os-ken + PyTorch runs through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.leaks import new_leftovers, snapshot

TESTBED = [sys.executable, "-m", "testbed"]
RUN_TIMEOUT_S = 600


def run_cli(args: list[str], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`testbed ARGS...` as a user would run it."""
    return subprocess.run([*TESTBED, *args], capture_output=True, text=True, timeout=timeout)


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
        subprocess.run([*TESTBED, "clean"], capture_output=True)
        pytest.fail(f"run left behind: {leaked}")
