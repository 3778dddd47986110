"""The pieces of background traffic without a network: flow-size sampling, the flow
agent over real loopback sockets, and the load arithmetic of traffic.csv."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from testbed.cdf import NAMED, SHIPPED, FlowSizes, cdf_path, load_cdf
from testbed.results.flows import fct_by_bucket, flows_summary


def test_shipped_cdfs_parse_with_their_published_means():
    """Web search (DCTCP) has a mean of ~1.7 MB, data mining (VL2) ~12.7 MB, with
    linear interpolation between the published points (computed from the points)."""
    means = {name: load_cdf(cdf_path(name, Path("."))).mean for name in NAMED}
    assert means["websearch"] == pytest.approx(1_711_250)
    assert means["datamining"] == pytest.approx(12_658_198.6)
    assert all((SHIPPED / f"{n}.cdf").read_text().startswith("# ") for n in NAMED)  # sources


def test_samples_follow_the_cdf():
    """The empirical CDF of 20,000 samples stays within eps = 0.015 of the file's at
    every point. DKW: P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2) = 2.5e-4."""
    import random

    sizes = load_cdf(cdf_path("websearch", Path(".")))
    rng = random.Random(7)
    n = 20_000
    samples = sorted(sizes.sample(rng) for _ in range(n))
    for size, p in zip(sizes.sizes, sizes.cdf):
        below = sum(1 for s in samples if s <= size) / n
        assert below == pytest.approx(p, abs=0.015)
    assert 1 <= samples[0] and samples[-1] <= 30_000_000


def test_a_one_point_step_samples_inside_its_segment():
    sizes = FlowSizes((10.0, 10.0, 20.0), (0.0, 0.5, 1.0))  # half exactly 10, half 10-20
    import random

    rng = random.Random(1)
    assert all(10 <= sizes.sample(rng) <= 20 for _ in range(1000))
    assert sizes.mean == pytest.approx(0.5 * 10 + 0.5 * 15)


def agent_config(tmp_path: Path, me: str, peer: str, end: float | None, seed: int) -> Path:
    config = {
        "entry": 0, "host": me, "ip": me, "port": 5399, "peers": [[peer, peer]],
        "rate_per_s": 25.0, "cdf": [[1000, 20000], [0, 1]], "seed": seed,
        "start_unix": time.time() + 0.3, "end_unix": end, "tos": 0,
        "records": str(tmp_path / f"{me}.jsonl"),
    }  # fmt: skip
    path = tmp_path / f"{me}.json"
    path.write_text(json.dumps(config))
    return path


def _all_flows_written(path: Path) -> bool:
    """The agent closed its window and every flow it started has its line."""
    if not path.exists():
        return False
    records = [json.loads(line) for line in path.read_text().splitlines()]
    closed = [r for r in records if r["type"] == "window_closed"]
    return bool(closed) and sum(r["type"] == "flow" for r in records) == closed[0]["flows"]


def test_agents_exchange_flows_over_loopback(tmp_path):
    """Two agents on 127.0.0.1 and 127.0.0.2 (both loopback) send each other Poisson
    flows for 1.5 s at 25 flows/s. The test waits until each agent's window is closed
    and every flow it started has its line (up to 60 s: a loaded CI machine can be
    slow to start Python, never this slow), then sends SIGTERM. Every flow is
    completed with all its bytes. The count is Poisson(37.5) per agent: fewer than
    10 has probability ~1e-7."""
    end = time.time() + 1.8
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed.traffic.agent",
                str(agent_config(tmp_path, a, b, end, s)),
            ]
        )
        for a, b, s in (("127.0.0.1", "127.0.0.2", 1), ("127.0.0.2", "127.0.0.1", 2))
    ]
    paths = [tmp_path / f"{me}.jsonl" for me in ("127.0.0.1", "127.0.0.2")]
    try:
        deadline = time.time() + 60
        while not all(_all_flows_written(p) for p in paths) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=10) for p in procs]
    assert codes == [0, 0]
    for path in paths:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert records[0]["type"] == "window" and records[0]["end"] == end
        flows = [r for r in records if r["type"] == "flow"]
        assert len(flows) >= 10
        assert all(r["completed"] and r["sent_bytes"] == r["size_bytes"] for r in flows)
        assert all(1000 <= r["size_bytes"] <= 20000 and r["fct_s"] > 0 for r in flows)
        assert all(r["start"] < end for r in flows)
        closed = [r for r in records if r["type"] == "window_closed"]
        assert closed == [{"type": "window_closed", "host": path.stem, "flows": len(flows)}]


def test_an_unfinished_flow_is_recorded_on_sigterm(tmp_path):
    """A peer that never answers: the flow is in flight at SIGTERM, and written as
    not completed with the bytes sent so far."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.2", 5399))
    listener.listen()  # accepts (in the backlog) but never reads or answers
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.traffic.agent",
         str(agent_config(tmp_path, "127.0.0.1", "127.0.0.2", None, 3))]
    )  # fmt: skip
    try:
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        listener.close()
    flows = [json.loads(x) for x in (tmp_path / "127.0.0.1.jsonl").read_text().splitlines()][1:]
    assert flows and not any(f["completed"] for f in flows)


def test_offered_and_delivered_load_arithmetic():
    """Two hosts at 10 Mb/s for 8 s carry 20 MB; flows of 6 MB and 4 MB started, the
    4 MB one completed: offered 0.5, delivered 0.2."""
    flows = pd.DataFrame(
        {"size_bytes": [6e6, 4e6], "completed": [False, True], "fct_s": [None, 2.0]}
    )
    entry = {"load": 0.5, "distribution": "websearch", "access_mbps": 20.0}
    out = flows_summary(flows, entry, (100.0, 108.0), None)
    assert out["offered_load"] == pytest.approx(0.5)
    assert out["delivered_load"] == pytest.approx(0.2)
    assert out["flows"] == 2 and out["completed"] == 1 and out["fct_p50_s"] == 2.0


def test_fct_buckets():
    flows = pd.DataFrame(
        {
            "size_bytes": [50e3, 99_999, 100e3, 5e6, 20e6],
            "completed": [True, True, True, False, True],
            "fct_s": [0.1, 0.3, 1.0, math.nan, 9.0],
        }
    )
    buckets = fct_by_bucket(flows).set_index("bucket")
    assert buckets.loc["<100kB", "flows"] == 2
    assert buckets.loc["<100kB", "fct_p50_s"] == pytest.approx(0.2)
    assert buckets.loc["100kB-10MB", "flows"] == 1  # the unfinished 5 MB flow is left out
    assert buckets.loc[">10MB", "fct_p99_s"] == 9.0
