"""Faults on purpose, on a real network: a core link pulled under a TCP PS job and
routed around (ECMP and two-level), a worker killed under on_failure continue and
fail, the controller killed with and without a restart. Every run leaves nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration

LINK = "a0_0--c1_1"
POD0_UPLINKS = ["a0_0--c1_1", "a0_0--c1_2", "a0_1--c2_1", "a0_1--c2_2"]
DOWN_AT, UP_AT, KILL_AT = 5.0, 11.0, 13.0


def fabric(**controller) -> dict:
    return {
        "topology": {"kind": "fat-tree", "k": 4, "link": {"bw_mbps": 10}},
        "controller": controller,
        # probes ride the top band, so the job's full queues do not read as outages
        "network": {"priority_bands": "always"},
        "results": {"sample_s": 0.5},
    }


def ps_job(name: str, placement: list[str], servers: int, **extra) -> dict:
    return {"name": name, "workers": len(placement) - servers, "servers": servers,
            "placement": placement, "model": {"name": "mlp", "hidden": [256]}, **extra}  # fmt: skip


def rate(links: pd.DataFrame, link: str, start: float, end: float) -> float:
    """Bytes per second both directions of `link` sent between two sample times."""
    rows = links[(links["link"] == link) & links["time_s"].between(start, end)]
    per_direction = rows.groupby("direction")["tx_bytes"]
    span = rows["time_s"].max() - rows["time_s"].min()
    return float((per_direction.max() - per_direction.min()).sum() / span)


@pytest.mark.parametrize("routing", ["ecmp", "two-level"])
def test_a_pulled_core_link_is_routed_around(tmp_path, no_leftovers, routing):
    """Link a0_0-c1_1 down at 5 s and up at 11 s, the controller killed (no restart)
    at 13 s, during a PS job whose 2 servers sit in pod 0 and 6 workers in the others.

    Bounds: the controller reroutes within ~15 ms of the port-status and userspace OVS
    loses ~25 ms of probes while it reconfigures (measured), so 1 s is a wide margin.
    Before the fault the link carries job traffic: under two-level it is the fixed path
    of the pulls to host id 2 (h5, h9, h13); under ECMP each of the 12 connections'
    2 directions crosses it with p = 1/4, so it stays unused with p = (3/4)^24 = 0.1%.
    While it is down, the 3 other uplinks of pod 0 carry at least half the pod's rate
    before: the job's rate is set by the servers' 10 Mb/s host links, not by the
    uplinks (3 x 10 Mb/s left), so it barely changes."""
    placement = ["h1", "h2", "h5", "h9", "h13", "h6", "h10", "h14"]
    spec = write_spec(tmp_path / "f.yaml", {
        "name": "linkfault", **fabric(routing=routing),
        "jobs": [ps_job("j", placement, 2, iterations=100)],
        "faults": [
            {"link": ["a0_0", "c1_1"], "action": "down", "at_s": DOWN_AT},
            {"link": ["c1_1", "a0_0"], "action": "up", "at_s": UP_AT},
            {"controller": "kill", "at_s": KILL_AT},
        ],
    })  # fmt: skip
    out = tmp_path / "run"
    result = run_cli(["run", str(spec), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert pd.read_csv(out / "jobs.csv").iloc[0]["status"] == "ok"

    faults = pd.read_csv(out / "faults.csv")
    down, up, kill = faults.iloc[0], faults.iloc[1], faults.iloc[2]
    assert down["what"] == "link a0_0-c1_1 down" and down["probed_pairs"] > 0
    assert 0 <= down["recovery_s"] < 1.0, down.to_dict()
    assert 0 <= down["detected_at_s"] - down["time_s"] < 0.5
    assert up["recovered_at_s"] - up["time_s"] < 0.5

    links = pd.read_csv(out / "links.csv")
    fired, back = down["time_s"], up["time_s"]
    before = {link: rate(links, link, fired - 3.0, fired) for link in POD0_UPLINKS}
    during = {link: rate(links, link, fired + 1.0, back - 0.5) for link in POD0_UPLINKS}
    assert before[LINK] > 2_000, before  # B/s: job traffic, not stray probes
    assert during[LINK] < 200, during  # nothing crosses a pulled cable
    others = sum(v for k, v in during.items() if k != LINK)
    assert others >= 0.5 * sum(before.values()), (before, during)

    # The controller's death leaves the flows in place: training goes on after it.
    its = pd.read_csv(out / "iterations.csv")
    assert (its["time_s"] > kill["time_s"] + 1).any()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["controller_deaths"][0]["exit_code"] == -9
    assert meta["controller_deaths"][0]["restarted"] is False


def test_killed_workers_and_a_restarted_controller(tmp_path, no_leftovers):
    """Two jobs; at 4 s a worker of each is killed. `keep` (on_failure continue)
    finishes with 2 of its 3 workers, its mean over those that delivered (the maths is
    tests/unit/test_fault_parts.py); `strict` (fail) fails naming the host and role.
    At 7 s the controller is killed and restarted: it re-syncs every switch and
    `keep` trains on. Around them: h16's only link goes down (no path left, said so),
    and core switch c2_2 goes down at 5 s and up at 9.5 s (routed around: the same
    1 s bound as a link, see above)."""
    spec = write_spec(tmp_path / "f.yaml", {
        "name": "kills", **fabric(restart=True),
        "jobs": [
            ps_job("keep", ["h1", "h5", "h9", "h13"], 1, iterations=80,
                   on_failure="continue", worker_timeout_s=5.0),
            ps_job("strict", ["h2", "h6", "h10", "h14"], 1, iterations=80),
        ],
        "faults": [
            {"host": "h9", "action": "kill", "at_s": 4.0},
            {"host": "h10", "action": "kill", "at_s": 4.0},
            {"controller": "kill", "at_s": 7.0},
            {"link": ["h16", "e3_1"], "action": "down", "at_s": 2.0},
            {"switch": "c2_2", "action": "down", "at_s": 5.0},
            {"switch": "c2_2", "action": "up", "at_s": 9.5},
        ],
    })  # fmt: skip
    out = tmp_path / "run"
    result = run_cli(["run", str(spec), "--out", str(out)])
    assert result.returncode != 0  # a job failed, as asked
    jobs = pd.read_csv(out / "jobs.csv").set_index("job")
    assert jobs.loc["keep", "status"] == "ok"
    assert jobs.loc["keep", "lost_workers"] == "worker1@h9 (-9)"
    assert jobs.loc["strict", "status"] == "failed"
    assert jobs.loc["strict", "error"].startswith("worker1@h10 killed by fault 1 (host h10 kill)")

    its = pd.read_csv(out / "iterations.csv")
    keep = its[its["job"] == "keep"]
    assert sorted(keep["live_workers"].unique()) == [2, 3]
    assert keep[keep["iteration"] == 79]["rank"].tolist() == [0, 2]  # the survivors finish
    assert keep.groupby("iteration")["live_workers"].first().is_monotonic_decreasing

    faults = pd.read_csv(out / "faults.csv")
    assert "the server went on without it" in faults.iloc[0]["detail"]
    assert faults.iloc[0]["recovery_s"] < 5.0 + 1.0  # dropped at once or at the timeout
    assert "job strict failed" in faults.iloc[1]["detail"]
    restart = faults.iloc[2]
    assert "restarted, every switch re-synced" in restart["detail"]
    assert keep["time_s"].max() > restart["recovered_at_s"]  # it trained on after the re-sync
    cut, switch_down, switch_up = faults.iloc[3], faults.iloc[4], faults.iloc[5]
    assert "no path left for 30 host pairs (h16: its only link)" in cut["detail"]
    assert pd.isna(cut["recovered_at_s"]) and pd.isna(cut["recovery_s"])
    assert switch_down["what"] == "switch c2_2 down" and 0 <= switch_down["recovery_s"] < 1.0
    assert switch_down["probed_pairs"] > 0 and switch_up["recovered_at_s"] > switch_up["time_s"]
    meta = json.loads((out / "metadata.json").read_text())
    death = meta["controller_deaths"][0]
    assert death["restarted"] is True and death["resynced_at_s"] > death["at_s"]
    assert (out / "logs" / "controller-1.log").exists()
