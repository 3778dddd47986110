"""The dynamic priority policies on real switches, not the fake flow table: which
class smallest-first gives each job, and las demoting a job as the switches count
its bytes, across a class change (MODIFY_STRICT must keep the real counters) and
across a controller killed and restarted (the class and the count must go on).

The las checks are bounds, not tolerances: the bytes a host had sent only grow, so the
links.csv sample taken at or before a time is a lower bound of them at that time and
the sample at or after it an upper bound. What las reads lags what was sent by at most
STALE_S (below): a poll round's period, plus Open vSwitch's revalidator pass, which is
what moves the datapath's packet counts into the OpenFlow counters. Measured here: the
round that demoted at 5.30 s read 4.39 MB, which the hosts had sent by 5.02 s.
"""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration

MB = 10**6


def job(name: str, hidden: list[int], placement: list[str], iterations: int) -> dict:
    return {"name": name, "model": {"name": "mlp", "hidden": hidden}, "workers": 2,
            "servers": 1, "placement": placement, "iterations": iterations,
            "eval_every": iterations}  # fmt: skip


def test_smallest_first_orders_the_classes_on_the_switches(tmp_path, no_leftovers):
    """Three jobs of three sizes across one 20 Mb/s bottleneck: classes small 0, mid 1,
    big 2 in controller.csv, and the bottleneck's band of each class carried that
    job's bytes (link_classes.csv against the job's own counters in jobs.csv)."""
    spec = write_spec(tmp_path / "sf.yaml", {
        "name": "smallest-first", "seed": 1,
        "topology": {"kind": "dumbbell", "hosts_per_side": 6,
                     "tiers": {"bottleneck": {"bw_mbps": 20}}},
        "controller": {"priority": "smallest-first", "priority_classes": 3},
        "jobs": [job("big", [256, 256], ["h3", "h11", "h12"], 10),
                 job("small", [32], ["h1", "h7", "h8"], 10),
                 job("mid", [256], ["h2", "h9", "h10"], 10)],
    })  # fmt: skip
    out = tmp_path / "run"
    assert run_cli(["run", str(spec), "--out", str(out)]).returncode == 0
    events = pd.read_csv(out / "controller.csv").set_index("job")
    assert events["class"].to_dict() == {"big": 2, "small": 0, "mid": 1}
    jobs = pd.read_csv(out / "jobs.csv").set_index("job")
    bands = pd.read_csv(out / "link_classes.csv")
    core = bands[bands["direction"].isin(["left->right", "right->left"])]
    carried = core.groupby(["direction", "band"])["bytes"].max().groupby("band").sum()
    for name, cls in (("small", 0), ("mid", 1)):
        # the same packets counted twice: by tc leaving one switch, by OVS entering the
        # other; the last band sample comes after the jobs, the counters are read after
        assert carried[cls] == pytest.approx(jobs.loc[name, "bytes_bottleneck_tier"], rel=0.05)
    assert carried[2] >= jobs.loc["big", "bytes_bottleneck_tier"]  # and anything unmarked


def sent_by(links: pd.DataFrame, hosts: list[str]) -> pd.Series:
    """Bytes the hosts had sent, by sample time (links.csv)."""
    return links[links["src"].isin(hosts)].groupby("time_s")["tx_bytes"].sum()


def floor_at(sent: pd.Series, t: float) -> float:
    """A lower bound of the bytes sent by time t: the last sample at or before t."""
    before = sent[sent.index <= t]
    return float(before.iloc[-1]) if len(before) else 0.0


def ceiling_at(sent: pd.Series, t: float) -> float:
    """An upper bound of the bytes sent by time t: the first sample at or after t."""
    after = sent[sent.index >= t]
    assert len(after), f"no links.csv sample after {t} s"
    return float(after.iloc[0])


def revalidator_s() -> float:
    """Open vSwitch's longest wait between revalidator passes (other_config, default 500 ms)."""
    got = subprocess.run(
        ["ovs-vsctl", "get", "Open_vSwitch", ".", "other_config:max-revalidator"],
        capture_output=True, text=True,
    )  # fmt: skip
    return int(got.stdout.strip().strip('"')) / 1000 if got.returncode == 0 else 0.5


# The controller sleeps poll_ms (200 ms) between rounds and then asks (allowing 300 ms
# more for a round's requests and replies on a busy machine); the counters it reads are
# at most one revalidator pass old. A slower loop fails the checks: las would be late.
POLL_ROUND_S = 0.5


def test_las_demotes_by_the_switches_counters_across_a_class_change_and_a_restart(
    tmp_path, no_leftovers
):
    """One PS job (340 kB messages, 10 Mb/s links; it sends ~1.7 MB/s) under las with
    thresholds 4 and 12 MB; the controller is killed 4.5 s after the network is ready
    (~2 s after the first demotion) and restarted. The first demotion comes when the
    job's hosts had sent about 4 MB; the restarted controller resumes class 1 (not 0)
    and the second demotion comes when 12 MB in all were counted: the bytes sent while
    no controller counted (from the last poll before the kill until the new one
    cleared the switches, 1-2.5 MB here) come on top. Had MODIFY_STRICT reset the
    counters, it would come 4 MB later; had the restart forgotten, ~6 MB later."""
    hosts = ["h1", "h3", "h4"]
    spec = write_spec(tmp_path / "las.yaml", {
        "name": "las", "seed": 1,
        "topology": {"kind": "dumbbell", "hosts_per_side": 2, "link": {"bw_mbps": 10}},
        "controller": {"priority": "las", "priority_classes": 3, "poll_ms": 200,
                       "las_thresholds_mb": [4, 12], "restart": True},
        "results": {"sample_s": 0.2},
        "jobs": [job("j", [256, 256], hosts, 30)],
        "faults": [{"controller": "kill", "at_s": 4.5}],
    })  # fmt: skip
    out = tmp_path / "run"
    result = run_cli(["run", str(spec), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    death = json.loads((out / "metadata.json").read_text())["controller_deaths"][0]
    events = pd.read_csv(out / "controller.csv")
    assert events["class"].tolist() == [0, 1, 1, 2], events
    start, first, resumed, second = events.itertuples()
    assert "resumed after a controller restart" in resumed.reason
    assert first.time_s < death["at_s"] < resumed.time_s < second.time_s
    sent = sent_by(pd.read_csv(out / "links.csv"), hosts)
    stale_s = POLL_ROUND_S + revalidator_s()
    # First demotion, counted from zero: the round that demoted had counted >= 4 MB; the
    # round before it < 4 MB, of bytes sent no more than stale_s before the demotion.
    assert ceiling_at(sent, first.time_s) >= 4 * MB
    assert floor_at(sent, first.time_s - stale_s) < 4 * MB
    # The count the restarted controller goes on from: the last round's before the kill.
    # Had MODIFY_STRICT reset the counters at the class change, it would be 4 MB short.
    carried = int(re.search(r"(\d+) B sent", resumed.reason)[1])
    assert floor_at(sent, death["at_s"] - stale_s) <= carried <= ceiling_at(sent, death["at_s"])
    # Second: the new controller counts from zero on the switches it cleared at some
    # time c between the kill and the re-sync (what was sent from the last count until
    # c is counted by no one), and demotes once carried + sent(now) - sent(c) >= 12 MB.
    # Had the restart forgotten `carried` (5+ MB), this would come that much later.
    assert ceiling_at(sent, second.time_s) >= 12 * MB - carried + floor_at(sent, death["at_s"])
    assert floor_at(sent, second.time_s - stale_s) < (
        12 * MB - carried + ceiling_at(sent, death["resynced_at_s"]))  # fmt: skip
