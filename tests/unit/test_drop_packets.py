"""`transport.drop_packets`: received messages lose whole 362-entry packets, both
directions, as blt at that loss bound can; over loopback TCP channels."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from testbed.spec.schema import BltSpec, TcpSpec
from testbed.training.ps import PSServer, PSWorker
from testbed.transports import make_transport
from testbed.transports.blt import ENTRIES_PER_PACKET

PACKETS = 200
N = PACKETS * ENTRIES_PER_PACKET - 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pair(fraction: float, seed: int = 3, at: str = "receiver"):
    transport = make_transport(TcpSpec(drop_packets=fraction, drop_at=at), seed=seed)
    port = free_port()
    listener = transport.listen("127.0.0.1", port)
    got = {}
    t = threading.Thread(target=lambda: got.update(listener.accept(1, 10)))
    t.start()
    sender = transport.connect("127.0.0.1", port, 0, 10)
    t.join()
    listener.close()
    return sender, got[0]


def transfer(sender, receiver, data, out, reliable=False):
    t = threading.Thread(target=sender.send, args=(1, data))
    t.start()
    stats = receiver.recv(1, out, reliable=reliable)
    t.join(timeout=30)
    return stats


def test_whole_packets_are_lost_and_left_as_they_were():
    """Lost entries come in aligned 362-entry blocks (never part of a packet), are
    left untouched in the receiver's buffer, and the mask says exactly which; the
    fraction lost is Binomial(200, 0.3) / 200 (sd 0.032), drawn from a seeded
    generator, so the same every run; 0.3 +- 0.14 (4.3 sd) would hold for 99.998% of
    seeds."""
    sender, receiver = pair(0.3)
    data = np.arange(N, dtype=np.float32)
    out = np.full(N, -1.0, np.float32)
    stats = transfer(sender, receiver, data, out)
    blocks = np.pad(stats.mask, (0, PACKETS * ENTRIES_PER_PACKET - N), constant_values=True)
    per_packet = blocks.reshape(PACKETS, ENTRIES_PER_PACKET)
    assert (per_packet.all(axis=1) | ~per_packet.any(axis=1)).all()  # whole packets only
    assert 0.16 <= 1 - stats.delivered_fraction <= 0.44
    assert np.array_equal(out[stats.mask], data[stats.mask])
    assert (out[~stats.mask] == -1).all()


def test_reliable_messages_and_drop_0_lose_nothing():
    sender, receiver = pair(0.5)
    out = np.zeros(N, np.float32)
    stats = transfer(sender, receiver, np.ones(N, np.float32), out, reliable=True)
    assert stats.mask is None and (out == 1).all()
    assert type(make_transport(BltSpec(kind="blt"))).__name__ == "BltTransport"


def test_the_same_seed_loses_the_same_packets():
    masks = []
    for _ in range(2):
        sender, receiver = pair(0.3, seed=11)
        out = np.zeros(N, np.float32)
        masks.append(transfer(sender, receiver, np.ones(N, np.float32), out).mask)
    assert np.array_equal(*masks)


def test_a_parameter_server_loses_on_the_push_and_on_the_pull():
    """Both directions, as blt: the server's push stats and the worker's pull stats
    each show missing packets; the worker keeps its old parameters where a pull lost."""
    port = free_port()
    n = 50 * ENTRIES_PER_PACKET
    spec = TcpSpec(drop_packets=0.4)
    server = PSServer(make_transport(spec, seed=1), "127.0.0.1", port, 1,
                      np.zeros(n, np.float32), lr=1.0, momentum=0.0)  # fmt: skip
    accepted = threading.Thread(target=server.accept)
    accepted.start()
    worker = PSWorker(make_transport(spec, seed=2), [["127.0.0.1", port]], 0)
    accepted.join()
    pushes = []
    serving = threading.Thread(target=lambda: pushes.extend(server.step(0)))
    serving.start()
    params = np.full(n, 7.0, np.float32)
    pulls = worker.exchange(0, np.ones(n, np.float32), params)
    serving.join(timeout=30)
    worker.close()
    server.close()
    assert pushes[0].stats.delivered_fraction < 1 and pulls[0].stats.delivered_fraction < 1
    lost = ~pulls[0].stats.mask
    assert (params[lost] == 7).all() and np.array_equal(params[~lost], server.params[~lost])
    # the server stepped only the entries that arrived (0 - lr x 1); the rest had no gradient
    assert set(np.unique(server.params)) == {-1.0, 0.0}


@pytest.mark.parametrize("kind", ["tcp", "blt"])
def test_drop_packets_makes_a_job_lossy_for_the_sync_layer(kind):
    spec = TcpSpec(drop_packets=0.1) if kind == "tcp" else BltSpec(kind="blt", loss_bound=0)
    assert spec.loses_entries == (kind == "tcp")
    assert BltSpec(kind="blt", loss_bound=0, drop_packets=0.1).loses_entries


def test_a_reduced_message_is_never_sent_and_the_receiver_knows_which_part():
    """drop_at: sender (APNet Fig. 3a's reduced message over TCP): the bytes on the wire
    are the kept packets only, both directions place every kept entry where it belongs
    (so both ends drew the same blocks), and the rest stays as it was. The kept share
    is Binomial(200, 0.7) / 200 (sd 0.032); [0.56, 0.84] (4.3 sd) holds for 99.998%
    of draws, and the draws are fixed by the port, rank and message id."""
    sender, receiver = pair(0.3, at="sender")
    data = np.arange(N, dtype=np.float32)
    for a, b in ((sender, receiver), (receiver, sender)):
        out = np.full(N, -1.0, np.float32)
        stats = transfer(a, b, data, out)
        assert 0.56 <= stats.delivered_fraction <= 0.84
        assert stats.nbytes == int(stats.mask.sum()) * 4  # only the kept entries travelled
        assert np.array_equal(out[stats.mask], data[stats.mask])
        assert (out[~stats.mask] == -1).all()


def test_a_reduced_message_needs_a_parameter_server_without_a_tree():
    from testbed.errors import SpecError
    from testbed.spec.load import validate

    job = {"name": "j", "workers": 2, "sync": "allreduce",
           "transport": {"kind": "tcp", "drop_packets": 0.1, "drop_at": "sender"}}  # fmt: skip
    raw = {"name": "s", "topology": {"kind": "dumbbell", "hosts_per_side": 2}, "jobs": [job]}
    with pytest.raises(SpecError, match="drop_at = 'sender': expected receiver unless sync: ps"):
        validate(raw, "s.yaml")
