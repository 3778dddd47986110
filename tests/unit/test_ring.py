"""Ring allreduce over loopback sockets: every worker ends with the same average."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from testbed.spec.schema import BltSpec, TcpSpec
from testbed.training.ring import RingAllreduce
from testbed.transports import make_transport


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_ring(spec, world, grads, iterations=2, **kwargs):
    ring = [["127.0.0.1", p] for p in free_ports(world)]
    params = [np.zeros(len(grads[0]), np.float32) for _ in range(world)]
    errors = []

    def worker(rank):
        try:
            sync = RingAllreduce(
                make_transport(spec, 2000.0), ring, rank, lr=1.0, momentum=0.0, **kwargs
            )
            for it in range(iterations):
                sync.exchange(it, grads[rank], params[rank])
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


def test_dropped_entries_contribute_nothing_but_the_sum_is_still_divided_by_w():
    world, n = 3, 3000
    grads = [np.ones(n, np.float32) for _ in range(world)]
    params = run_ring(TcpSpec(), world, grads, iterations=1, drop_fraction=0.5, seed=0)
    for p in params:
        assert -1.0 <= p.min() and p.max() <= 0.0  # each entry: -(kept contributions)/W
        assert abs(p.mean() + 0.5) < 0.05  # half of the contributions kept on average
    np.testing.assert_array_equal(params[0], params[1])  # all workers agree
