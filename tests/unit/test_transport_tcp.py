"""TCP transport and parameter-server logic over loopback sockets."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from testbed.spec.schema import TcpSpec
from testbed.training.ps import PSServer, PSWorker, average, shard_bounds
from testbed.transports import make_transport


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_messages_round_trip_with_congestion_control_set():
    transport = make_transport(TcpSpec(congestion_control="reno"))
    port = free_port()
    listener = transport.listen("127.0.0.1", port)
    got = {}
    t = threading.Thread(target=lambda: got.update(listener.accept(2, 10)))
    t.start()
    clients = [transport.connect("127.0.0.1", port, rank, 10) for rank in (1, 0)]
    t.join()
    assert sorted(got) == [0, 1]
    for ch in [*clients, *got.values()]:
        algo = ch.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        assert algo.rstrip(b"\0") == b"reno"
    data = np.arange(100_000, dtype=np.float32)
    clients[1].send(7, data)  # rank 0's channel
    out = np.zeros_like(data)
    stats = got[0].recv(7, out)
    assert np.array_equal(out, data)
    assert stats.nbytes == data.nbytes and stats.delivered_fraction == 1.0 and stats.fct_s >= 0
    clients[0].send(8, data)
    with pytest.raises(ConnectionError, match="expected message 9"):
        got[1].recv(9, out)
    for ch in [*clients, *got.values()]:
        ch.close()
    listener.close()


@pytest.mark.parametrize("pacing", ["none", "fair-share"])
def test_fair_share_pacing_holds_tcp_to_the_share(pacing):
    """4 MB at a share of 40 Mb/s takes 0.8 s when paced. Loopback's 64 kB segments make
    pacing coarse (one segment is 13 ms, and the first window leaves at once), so more
    than 0.5 s is asked; unpaced, loopback moves it in milliseconds."""
    transport = make_transport(TcpSpec(pacing=pacing))
    port = free_port()
    listener = transport.listen("127.0.0.1", port)
    got = {}
    t = threading.Thread(target=lambda: got.update(listener.accept(1, 10)))
    t.start()
    client = transport.connect("127.0.0.1", port, 0, 10)
    t.join()
    client.set_share(40.0)
    data = np.ones(1_000_000, dtype=np.float32)
    out = np.zeros_like(data)
    start = time.monotonic()
    sender = threading.Thread(target=client.send, args=(1, data))
    sender.start()
    got[0].recv(1, out)
    sender.join()
    elapsed = time.monotonic() - start
    assert (elapsed > 0.5) == (pacing == "fair-share"), elapsed
    for ch in (client, got[0]):
        ch.close()
    listener.close()


def test_unknown_congestion_control_is_an_error():
    transport = make_transport(TcpSpec(congestion_control="nosuchcc"))
    port = free_port()
    listener = transport.listen("127.0.0.1", port)
    with pytest.raises(OSError):
        transport.connect("127.0.0.1", port, 0, 5)
    listener.close()


def test_shard_bounds_cover_vector_evenly():
    bounds = shard_bounds(10, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert {hi - lo for lo, hi in bounds} <= {3, 4}


def test_average_counts_only_delivered_entries():
    a = np.array([1, 1, 1, 1], np.float32)
    b = np.array([3, 3, 3, 3], np.float32)
    out = np.empty(4, np.float32)
    assert average([a, b], [None, np.array([True, False, True, False])], out).tolist() == [
        2,
        1,
        2,
        1,
    ]
    assert average([b], [np.zeros(4, bool)], out).tolist() == [0, 0, 0, 0]


def test_parameter_server_applies_mean_gradient_on_each_shard():
    transport = make_transport(TcpSpec())
    params = np.linspace(-1, 1, 11).astype(np.float32)
    ports = [free_port(), free_port()]
    bounds = shard_bounds(len(params), 2)
    servers = [
        PSServer(transport, "127.0.0.1", port, 2, params[lo:hi], lr=0.5, momentum=0.0)
        for port, (lo, hi) in zip(ports, bounds)
    ]

    def serve(server):
        server.accept()
        server.step(0)
        server.step(1)
        server.close()

    threads = [threading.Thread(target=serve, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    addrs = [["127.0.0.1", p] for p in ports]
    grads = [np.full(11, 1.0, np.float32), np.full(11, 3.0, np.float32)]
    local = [params.copy(), params.copy()]
    workers = [None, None]

    def work(rank):
        workers[rank] = PSWorker(transport, addrs, rank)
        for it in range(2):
            workers[rank].exchange(it, grads[rank], local[rank])
        workers[rank].close()

    wthreads = [threading.Thread(target=work, args=(r,)) for r in (0, 1)]
    for t in wthreads:
        t.start()
    for t in wthreads + threads:
        t.join(timeout=30)
    expected = params - 2 * 0.5 * 2.0  # two steps of lr 0.5 with mean gradient 2
    for vec in local:
        np.testing.assert_allclose(vec, expected, rtol=1e-6)
