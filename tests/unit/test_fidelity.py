"""metadata.json's fidelity: CPU figures and the flags that mark a run untrustworthy,
from hand-made cpu.csv and links.csv rows (the live figures come from every run)."""

from __future__ import annotations

import json
import os
import time

import pandas as pd

from testbed.results.fidelity import CORES, CpuSampler, assess, cpu_figures, slow_links


def machine(busy: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"time_s": range(len(busy)), "source": "machine", "cpu_pct": busy})


def test_cpu_figures_count_seconds_above_90_percent():
    figures = cpu_figures(machine([10, 95, 99, 50, 20, 30, 40, 60, 70, 80, 85]))
    assert figures["cpu_busy_above_90_s"] == 2 and figures["cpu_saturated_share"] == 0.2
    assert figures["cpu_busy_p50_pct"] == 60


def link_rows(held: list) -> pd.DataFrame:
    """One direction's samples: `held` is links.csv's held_back (None: not backlogged)."""
    return pd.DataFrame(
        {"time_s": range(len(held)), "direction": "a->b", "held_back": held}
    )  # fmt: skip


def test_a_link_that_held_packets_its_shaper_would_send_is_slow():
    assert slow_links(link_rows([1, 1, 1, 0, 0, None])) == {
        "a->b": {"held_samples": 3, "backlogged_samples": 5}}  # fmt: skip


def test_a_link_held_back_by_its_own_shaper_is_never_slow():
    """Backlogged at every sample and always in debt: it ran at its rate."""
    assert slow_links(link_rows([0] * 50)) == {}


def test_slow_needs_3_held_samples_and_a_tenth_of_the_backlogged_ones():
    assert slow_links(link_rows([1, 1, None, None])) == {}  # too little evidence
    assert slow_links(link_rows([1, 1, 1] + [0] * 30)) == {}  # 3 of 33 < 10%
    assert slow_links(link_rows([1, 1, 1] + [0] * 27)) != {}  # 3 of 30
    assert slow_links(pd.DataFrame({"direction": ["a->b"], "backlog_pkts": [3]})) == {}


def test_a_saturated_run_is_not_trustworthy_and_says_why(tmp_path):
    machine([99] * 5 + [20] * 5).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows([None] * 10).to_csv(tmp_path / "links.csv", index=False)
    fidelity = assess(tmp_path, [])
    assert not fidelity["trustworthy"]
    assert fidelity["reasons"] == ["CPU above 90% busy for 4.0 s (44% of the run)"]


def test_a_held_back_link_makes_a_run_untrustworthy_and_is_named(tmp_path):
    machine([30] * 10).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows([1] * 4 + [0] * 6).to_csv(tmp_path / "links.csv", index=False)
    fidelity = assess(tmp_path, [])
    assert fidelity["reasons"] == [
        "links held packets back that their shaper would have sent: "
        "a->b (4 of 10 backlogged samples)"]  # fmt: skip


def test_a_saturated_switch_is_named_as_the_cause_with_what_to_change(tmp_path):
    """ovs-vswitchd at >= 90% of a core while a link ran slow: the switch is the reason,
    and the advice depends on the forwarding plane recorded in metadata.json."""
    ovs = pd.DataFrame({"time_s": range(10), "source": "ovs-vswitchd", "cpu_pct": 94 / CORES})
    pd.concat([machine([60] * 10), ovs]).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows([1] * 4 + [0] * 6).to_csv(tmp_path / "links.csv", index=False)
    for ports, advice in [("packet", "or set network.ports: afxdp"), ("afxdp", "")]:
        (tmp_path / "metadata.json").write_text(json.dumps({"platform": {"ports": ports}}))
        fidelity = assess(tmp_path, [])
        assert fidelity["switch_saturated"] and not fidelity["trustworthy"]
        assert fidelity["reasons"] == [
            f"the switch was the bottleneck: ovs-vswitchd at 94% of a core (p95, {ports} "
            "ports) while links held back packets their shaper would have sent: a->b (4 of "
            f"10 backlogged samples); lower the link rates{' ' + advice if advice else ''}"
        ]
    ovs["cpu_pct"] = 80 / CORES  # 80% of a core: the switch had room, the cause is unknown
    pd.concat([machine([60] * 10), ovs]).to_csv(tmp_path / "cpu.csv", index=False)
    fidelity = assess(tmp_path, [])
    assert not fidelity["switch_saturated"]
    assert fidelity["reasons"][0].startswith("links held packets back")


def test_a_calm_run_is_trustworthy(tmp_path):
    machine([30] * 10).to_csv(tmp_path / "cpu.csv", index=False)
    link_rows([0] * 10).to_csv(tmp_path / "links.csv", index=False)
    fidelity = assess(tmp_path, [])
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
