"""Every transport and sync scheme trains a real job through the emulated network,
and under 5% link loss blt delivers at least 1 - loss_bound of every message while
TCP delivers everything.

Accuracy threshold: the digits MLP reaches ~0.9 after 150 synchronous steps of 4x32
examples without loss; 0.8 leaves room for the different orders of reduction
(allreduce vs PS) and for blt's occasional partial messages.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, write_spec
from tests.integration.linkcheck import assert_directions

pytestmark = pytest.mark.integration

ACCURACY_FLOOR = 0.8

CASES = {
    "tcp-ps": ({"kind": "tcp"}, "ps", 3, 1),
    "tcp-allreduce": ({"kind": "tcp"}, "allreduce", 4, 0),
    "blt-ps": ({"kind": "blt"}, "ps", 3, 1),
    "blt-allreduce": ({"kind": "blt"}, "allreduce", 4, 0),
    "gloo-allreduce": ({"kind": "gloo"}, "allreduce", 4, 0),
}


def run_job(tmp_path, name, transport, sync, workers, servers, link=None, iterations=150):
    spec = {
        "name": name,
        "topology": {"kind": "dumbbell", "hosts_per_side": 2, "link": link or {}},
        "jobs": [
            {
                "name": "j",
                "workers": workers,
                "servers": servers,
                "sync": sync,
                "transport": transport,
                "iterations": iterations,
                "eval_every": 50,
                "momentum": 0.5,
            }
        ],
    }
    out = tmp_path / name
    proc = run_cli(["run", str(write_spec(tmp_path / f"{name}.yaml", spec)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_job_learns(tmp_path, case, no_leftovers):
    transport, sync, workers, servers = CASES[case]
    out = run_job(tmp_path, case, transport, sync, workers, servers)
    jobs = pd.read_csv(out / "jobs.csv")
    assert jobs.loc[0, "status"] == "ok"
    assert jobs.loc[0, "final_accuracy"] > ACCURACY_FLOOR
    its = pd.read_csv(out / "iterations.csv")
    assert len(its) == workers * 150
    msgs = pd.read_csv(out / "messages.csv")
    expected_kinds = {"ps": {"push", "pull"}, "allreduce": {"reduce", "gather"}}[sync]
    if transport["kind"] == "gloo":
        expected_kinds = {"allreduce"}
    if transport["kind"] == "blt" and sync == "allreduce":  # lossy: missing entries agreed on
        expected_kinds |= {"agree"}
    assert set(msgs["kind"]) == expected_kinds
    assert (msgs["transport"] == transport["kind"]).all()


def test_under_link_loss_blt_delivers_its_bound_and_tcp_everything(tmp_path, no_leftovers):
    lossy = {"loss_pct": 5}
    blt = run_job(tmp_path, "blt-loss", {"kind": "blt", "loss_bound": 0.1}, "ps", 3, 1, lossy, 60)
    # TCP only has to show it delivers everything; each of its iterations waits on
    # retransmission timeouts here (~1.7 s), so 20 iterations (120 messages) suffice.
    tcp = run_job(tmp_path, "tcp-loss", {"kind": "tcp"}, "ps", 3, 1, lossy, 20)
    blt_msgs = pd.read_csv(blt / "messages.csv")
    assert (blt_msgs["delivered_fraction"] >= 0.9).all()
    assert (
        blt_msgs["delivered_fraction"] < 1
    ).mean() > 0.2  # ~0.5 expected; tolerated loss happened
    assert blt_msgs["retransmitted_bytes"].sum() > 0  # and shortfalls were requested again
    tcp_msgs = pd.read_csv(tcp / "messages.csv")
    assert (tcp_msgs["delivered_fraction"] == 1.0).all()
    meta = json.loads((blt / "metadata.json").read_text())
    lossy_dirs = [
        e for e in meta["links"] if e["configured_loss_pct"] == 5 and e["offered_packets"] > 500
    ]
    assert_directions(lossy_dirs)


@pytest.mark.parametrize(
    "transport",
    [{"kind": "blt"}, {"kind": "blt", "fill": "stale", "drop_fraction": 0.2}],
    ids=["zero", "stale-drop0.2"],
)
def test_ring_replicas_stay_identical_under_link_loss(tmp_path, transport, no_leftovers):
    """Ring allreduce over blt (loss bound 0.1) with 5% loss on every link: messages
    lose entries, and yet every worker holds the same parameters at each evaluation
    (testbed.training.ring agrees on the missing entries before each update)."""
    name = "ring-" + transport.get("fill", "zero")
    out = run_job(tmp_path, name, transport, "allreduce", 3, 0, {"loss_pct": 5}, 60)
    assert pd.read_csv(out / "jobs.csv").loc[0, "status"] == "ok"
    msgs = pd.read_csv(out / "messages.csv")
    data = msgs[msgs["kind"].isin(["reduce", "gather"])]
    # Loss really left holes for the agreement to handle: chunks here are ~5 packets, so
    # a lost packet mostly exceeds the 0.1 bound and is resent; 7.6% of 720 messages
    # stayed partial in one run (~55, Poisson sd ~7); 2% (14) is > 5 sd below that.
    assert (data["delivered_fraction"] < 1).mean() > 0.02
    assert (msgs[msgs["kind"] == "agree"]["delivered_fraction"] == 1).all()
    its = pd.read_csv(out / "iterations.csv")
    divergence = its.dropna(subset=["param_divergence"])["param_divergence"]
    assert len(divergence) == 2 and (divergence == 0).all()


def test_a_slow_start_under_loss_does_not_fail_the_job(tmp_path, no_leftovers):
    """The held-out spec that once failed at start-up (a worker's handshake timed out
    while the servers set their 12 peers up one by one): a k=4 fat-tree with 3% loss
    on every link, 12 workers and 2 servers over blt, each started with the exec
    launcher so that 14 interpreters import torch at once on 2 cores."""
    spec = {
        "name": "slowstart",
        "topology": {"kind": "fat-tree", "k": 4, "link": {"loss_pct": 3}},
        "launcher": "exec",
        "jobs": [
            {"name": "j", "workers": 12, "servers": 2, "transport": "blt", "iterations": 5,
             "eval_every": 5}
        ],
    }  # fmt: skip
    out = tmp_path / "slowstart"
    proc = run_cli(["run", str(write_spec(tmp_path / "slowstart.yaml", spec)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = pd.read_csv(out / "jobs.csv")
    assert jobs.loc[0, "status"] == "ok" and jobs.loc[0, "iterations"] == 5
