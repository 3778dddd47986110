"""metadata.json's fidelity: CPU figures and the flags that mark a run untrustworthy,
from hand-made cpu.csv and links.csv rows (the live figures come from every run)."""

from __future__ import annotations

import os
import time

import pandas as pd

from testbed.results.fidelity import CpuSampler, assess, cpu_figures, slow_links


def machine(busy: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"time_s": range(len(busy)), "source": "machine", "cpu_pct": busy})


def test_cpu_figures_count_seconds_above_90_percent():
    figures = cpu_figures(machine([10, 95, 99, 50, 20, 30, 40, 60, 70, 80, 85]))
    assert figures["cpu_busy_above_90_s"] == 2 and figures["cpu_saturated_share"] == 0.2
    assert figures["cpu_busy_p50_pct"] == 60


def link_rows(mbps: float, backlog: list[int]) -> pd.DataFrame:
    sent = [i * mbps * 1e6 / 8 for i in range(len(backlog))]
    return pd.DataFrame(
        {"time_s": range(len(backlog)), "direction": "a->b", "tx_bytes": sent,
         "backlog_pkts": backlog}
    )  # fmt: skip


def test_a_backlogged_link_below_its_rate_is_slow():
    assert slow_links(link_rows(80, [5] * 6), {"a->b": 100}) == {"a->b": 0.8}
    assert slow_links(link_rows(97, [5] * 6), {"a->b": 100}) == {}


def test_an_idle_link_is_never_slow():
    """Below its rate with an empty queue: the senders had nothing more to send."""
    assert slow_links(link_rows(10, [0] * 6), {"a->b": 100}) == {}
    assert slow_links(link_rows(10, [5, 5, 0, 5, 0, 5]), {"a->b": 100}) == {}  # < 3 s


def test_a_saturated_run_is_not_trustworthy_and_says_why(tmp_path):
    machine([99] * 5 + [20] * 5).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows(100, [0] * 10).to_csv(tmp_path / "links.csv", index=False)
    fidelity = assess(tmp_path, [], {"a->b": 100})
    assert not fidelity["trustworthy"]
    assert fidelity["reasons"] == ["CPU above 90% busy for 4.0 s (44% of the run)"]


def test_a_calm_run_is_trustworthy(tmp_path):
    machine([30] * 10).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows(100, [3] * 10).to_csv(tmp_path / "links.csv", index=False)
    fidelity = assess(tmp_path, [], {"a->b": 100})
    assert fidelity["trustworthy"] and fidelity["reasons"] == []


def test_the_sampler_sees_a_busy_process_group(tmp_path):
    """A child spinning in a process group of its own shows up under its name."""
    import subprocess
    import sys

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        sampler = CpuSampler(tmp_path / "cpu.csv", 0.2, time.time(), lambda: {"spin": [spin.pid]})
        sampler.start()
        time.sleep(1.5)
        sampler.stop()
    finally:
        spin.kill()
        spin.wait()
    cpu = pd.read_csv(tmp_path / "cpu.csv")
    assert set(cpu["source"]) >= {"machine", "harness", "spin"}
    spinning = cpu[cpu["source"] == "spin"]["cpu_pct"]
    # one core of the machine's cores, measured over >= 5 intervals; half a core at least
    assert len(spinning) >= 5 and spinning.mean() > 50 / os.cpu_count()
    # CPU time spent before the sampler started (this test process's) is never a row:
    # no source can use more than the whole machine (+10% for 10 ms tick granularity)
    assert (cpu["cpu_pct"] <= 110).all(), cpu[cpu["cpu_pct"] > 110]
