"""Ring allreduce over loopback sockets: every worker ends with the same average."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from testbed.spec.schema import BltSpec, TcpSpec
from testbed.training.ring import RingAllreduce
from testbed.transports import make_transport
from testbed.transports.blt import ENTRIES_PER_PACKET, BltTransport


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_ring(spec, world, grads, iterations=2, drop=None, messages=None, **kwargs):
    """Train `iterations` steps of a `world`-worker ring on loopback; each worker's params.
    `drop`: a blt DropRule (deterministic loss on every channel)."""
    ring = [["127.0.0.1", p] for p in free_ports(world)]
    params = [np.zeros(len(grads[0]), np.float32) for _ in range(world)]
    errors = []

    def transport():
        if drop is None:
            return make_transport(spec, 2000.0)
        return BltTransport(spec, default_mbps=2000.0, drop=drop)

    def worker(rank):
        try:
            seeded = {**kwargs, "seed": kwargs.get("seed", 0) + rank}  # as cfg.seed*1000+rank
            sync = RingAllreduce(transport(), ring, rank, lr=1.0, momentum=0.0, **seeded)
            for it in range(iterations):
                got = sync.exchange(it, grads[rank], params[rank])
                if messages is not None:
                    messages.extend(got)
            sync.close()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return params


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("spec", [TcpSpec(), BltSpec(kind="blt")], ids=["tcp", "blt"])
def test_every_worker_applies_the_mean_gradient(spec, world):
    n = 1000  # not divisible by every world size: uneven chunks
    grads = [np.full(n, r + 1, np.float32) for r in range(world)]
    params = run_ring(spec, world, grads)
    mean = (world + 1) / 2
    for p in params:
        np.testing.assert_allclose(p, -2 * mean, rtol=1e-6)  # two steps of lr 1


def test_an_entry_any_worker_dropped_is_left_out_of_the_step_on_every_worker():
    """drop_fraction 0.5 on 3 workers: an entry keeps all 3 contributions with
    probability 0.125, and then moves by the mean (1); otherwise it is missing and
    `zero` gives it no step. 3000 entries: sd of the kept share 0.006, tolerance 0.04."""
    world, n = 3, 3000
    grads = [np.ones(n, np.float32) for _ in range(world)]
    params = run_ring(TcpSpec(), world, grads, iterations=1, drop_fraction=0.5, seed=0)
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])  # every replica the same
    assert set(np.unique(params[0])) <= {0.0, -1.0}
    assert abs((params[0] == -1.0).mean() - 0.125) < 0.04


def test_stale_fill_reuses_the_previous_average_for_dropped_entries():
    """Two steps of constant gradient 1: under `stale` an entry that was complete in
    step 0 moves again in step 1 whatever is dropped (P = 0.125), under `zero` only if
    complete twice (P = 0.016). Same seeds, so the same entries are dropped."""
    world, n = 3, 3000
    grads = [np.ones(n, np.float32) for _ in range(world)]
    twice = {}
    for fill in ("zero", "stale"):
        params = run_ring(TcpSpec(), world, grads, drop_fraction=0.5, seed=0, fill=fill)
        for p in params[1:]:
            np.testing.assert_array_equal(p, params[0])
        twice[fill] = (params[0] == -2.0).mean()
    assert twice["zero"] < 0.05 < 0.08 < twice["stale"]


LOST = {3, 7}  # data packets lost on their first pass, in every message


def first_pass_loss(msg_id, seq, attempt):
    return attempt == 0 and seq in LOST


@pytest.mark.parametrize("fill", ["zero", "stale"])
def test_replicas_stay_identical_when_the_transport_loses_entries(fill):
    """blt with a 0.5 loss bound never resends: every reduce and gather message loses
    packets 3 and 7, at a different place of each chunk on each worker. Without the
    agreement pass every worker would fill different entries. The bitmaps themselves
    lose packets too (when long enough) and are resent: they are received reliably."""
    world, n = 3, 3 * ENTRIES_PER_PACKET * 12  # 12 packets per chunk
    grads = [np.arange(n, dtype=np.float32) * (r + 1) for r in range(world)]
    messages = []
    params = run_ring(
        BltSpec(kind="blt", loss_bound=0.5, fill=fill),
        world,
        grads,
        iterations=3,
        drop=first_pass_loss,
        messages=messages,
        lossy=True,
    )
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])
    moved = params[0] != 0
    assert 0.1 < 1 - moved[1:].mean() < 0.9  # some entries missed every step, most did not
    kinds = {m.kind for m in messages}
    assert kinds == {"reduce", "gather", "agree"}
    assert all(m.stats.delivered_fraction == 1.0 for m in messages if m.kind == "agree")


def test_ring_message_ids_never_collide_for_any_valid_ring():
    """Every id of two consecutive iterations is distinct, for every ring size the
    schema allows (the old iteration * 2048 + code collided from 684 workers on), and
    the largest id fits the transports' 32-bit message field."""
    from testbed.spec.schema import JobSpec
    from testbed.training.ring import message_id

    def limit(name):
        return next(m.le for m in JobSpec.model_fields[name].metadata if hasattr(m, "le"))

    for size in range(2, limit("workers") + 1):
        steps = np.arange(size - 1)
        ids = np.concatenate([message_id(it, size, phase, steps)
                              for it in (7, 8) for phase in (0, 1, 2)])  # fmt: skip
        assert len(np.unique(ids)) == len(ids), size
    largest = message_id(limit("iterations") - 1, limit("workers"), 2, limit("workers") - 2)
    assert largest < 2**32
