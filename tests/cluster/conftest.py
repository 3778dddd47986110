"""The two guests of `make cluster-test` run no NTP."""

from __future__ import annotations

import os
import subprocess

import pytest

from testbed.network.cluster import clock_offset, ssh_argv


@pytest.fixture(scope="session", autouse=True)
def synced_clocks():
    """Each guest set its clock at boot from QEMU's RTC, which has whole seconds, so b
    starts up to 1 s off a. Set b's clock to a's once, as NTP would on real servers;
    the doctor then measures what is left. (Off these guests: nothing to do.)"""
    peer = os.environ.get("MLNET_CLUSTER_PEER")
    if not peer:
        return
    measured = clock_offset(peer)
    assert measured is not None, f"no time from {peer}"
    offset, error = measured
    print(f"\n{peer}'s clock at boot: {offset * 1e3:+.1f} ms (±{error * 1e3:.1f}); setting it")
    # b steps its own clock in one call: no ssh latency or process start in the step.
    script = f"import time; time.clock_settime(time.CLOCK_REALTIME, time.time() - {offset!r})"
    subprocess.run(ssh_argv(peer, ["python3", "-c", script]), check=True, timeout=60)
