"""Aggregation trees over loopback TCP: the same mathematics as direct PS traffic.

Three workers and two server shards exchange fixed random gradients for a few
iterations, once through flat `PSServer`/`PSWorker` and once through trees. The
final parameters must agree to float rounding (rtol 1e-5: the sums are added in a
different order, each addition rounding at 2^-24 relative, over 6 steps), also when
workers drop entries on purpose, which exercises the per-entry counts."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from testbed.jobs.trees import Tree, plan_edges
from testbed.spec.schema import TcpSpec
from testbed.training.ps import PSServer, PSWorker, shard_bounds
from testbed.training.tree import TreeServer, TreeWorker, decode, pack
from testbed.transports import make_transport
from tests.unit.test_transport_tcp import free_port

W, N, ITERATIONS = 3, 1001, 6
LR, MOMENTUM = 0.1, 0.9


def gradients(seed=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((ITERATIONS, W, N)).astype(np.float32)


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "an exchange hung"


def serve_all(server):
    """A server's whole life: accept its peers, run every iteration, close."""
    server.accept()
    for it in range(ITERATIONS):
        server.step(it)
    server.close()


def train_all(worker, grads, rank, local):
    """A worker's whole life: exchange every iteration's gradient, close."""
    for it in range(ITERATIONS):
        worker.exchange(it, grads[it, rank], local[rank])
    worker.close()


def flat(grads, params, drop_fraction):
    transport = make_transport(TcpSpec())
    ports = [free_port() for _ in range(2)]
    bounds = shard_bounds(N, 2)
    servers = [
        PSServer(transport, "127.0.0.1", p, W, params[lo:hi], LR, MOMENTUM)
        for p, (lo, hi) in zip(ports, bounds)
    ]
    local = [params.copy() for _ in range(W)]

    def work(rank):
        peers = [["127.0.0.1", p] for p in ports]
        train_all(PSWorker(transport, peers, rank, drop_fraction, seed=rank), grads, rank, local)

    run_threads(
        [lambda s=s: serve_all(s) for s in servers] + [lambda r=r: work(r) for r in range(W)]
    )
    return local


def treed(grads, params, trees, drop_fraction):
    transport = make_transport(TcpSpec())
    ports = {(node, s): free_port() for t in trees for node in [t.root, *t.parent] for s in (0, 1)}
    plan = plan_edges(trees, lambda node, s: ["127.0.0.1", ports[(node, s)]])
    counted = drop_fraction > 0
    bounds = shard_bounds(N, 2)
    local = [params.copy() for _ in range(W)]

    def serve(s):
        lo, hi = bounds[s]
        server = TreeServer(
            transport,
            "127.0.0.1",
            ports[(f"server{s}", s)],
            plan[f"server{s}"][0],
            params[lo:hi],
            LR,
            MOMENTUM,
            counted,
            "zero",
        )
        serve_all(server)

    def work(rank):
        worker = TreeWorker(
            transport,
            "127.0.0.1",
            rank,
            plan[f"worker{rank}"],
            counted,
            "zero",
            drop_fraction,
            seed=rank,
        )
        train_all(worker, grads, rank, local)

    run_threads([lambda s=s: serve(s) for s in (0, 1)] + [lambda r=r: work(r) for r in range(W)])
    return local


# shard 0: a chain server0 <- worker0 <- worker1 <- worker2 (depth 3);
# shard 1: server1 <- worker2 <- {worker0, worker1} (one aggregator, two leaves).
TREES = [
    Tree(0, {"worker0": "server0", "worker1": "worker0", "worker2": "worker1"}),
    Tree(1, {"worker2": "server1", "worker0": "worker2", "worker1": "worker2"}),
]


@pytest.mark.parametrize("drop_fraction", [0.0, 0.3])
def test_trees_end_with_the_parameters_of_direct_pushes(drop_fraction):
    grads = gradients()
    params = np.linspace(-1, 1, N).astype(np.float32)
    expected = flat(grads, params, drop_fraction)
    got = treed(grads, params, TREES, drop_fraction)
    for rank in range(W):
        np.testing.assert_allclose(got[rank], expected[rank], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[0], params)  # it did train


def test_counts_travel_with_the_sum_and_a_lost_count_word_voids_its_entries():
    total = np.arange(9, dtype=np.float32)
    counts = np.array([3, 2, 1, 0, 3, 3, 2, 1, 3], np.float32)
    message = pack(total, counts)
    assert len(message) == 9 + 3 and not np.isnan(message).any()
    values, got, valid = decode(message, None, 9, 3, counted=True)
    assert got.tolist() == counts.tolist() and valid.all()
    mask = np.ones(12, bool)
    mask[9 + 1] = False  # the word carrying the counts of entries 4..7 was lost
    mask[0] = False  # and entry 0 itself
    values, got, valid = decode(message, mask, 9, 3, counted=True)
    assert valid.tolist() == [False, True, True, True, False, False, False, False, True]
    assert got[~valid].sum() == 0 and values[~valid].sum() == 0


def test_counts_above_the_one_byte_limit_are_refused():
    with pytest.raises(ValueError, match="127"):
        pack(np.zeros(4, np.float32), np.full(4, 128, np.float32))
