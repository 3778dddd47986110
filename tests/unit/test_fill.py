"""Fill policies for missing or dropped entries, at the parameter server and in the
ring, with deterministic fake channels (no sockets)."""

from __future__ import annotations

import numpy as np

from testbed.training.messages import drop_entries, valid_mask
from testbed.training.ps import PSServer
from testbed.transports import MessageStats


class FakeChannel:
    """Delivers prepared (values, mask) messages; records what is sent back."""

    def __init__(self, inbox):
        self.inbox = list(inbox)
        self.sent = []

    def recv(self, msg_id, out):
        values, mask = self.inbox.pop(0)
        if mask is None:
            out[:] = values
        else:
            out[mask] = values[mask]
        return MessageStats(msg_id, out.nbytes, 0.0, 1.0 if mask is None else mask.mean(), 0, mask)

    def send(self, msg_id, data):
        self.sent.append(data.copy())

    def set_share(self, mbps):
        pass

    def close(self):
        pass


class NoTransport:
    def listen(self, ip, port):
        class L:
            def close(self):
                pass

        return L()


def server(fill, inboxes):
    s = PSServer(
        NoTransport(),
        "x",
        0,
        len(inboxes),
        np.zeros(4, np.float32),
        lr=1.0,
        momentum=0.0,
        fill=fill,
    )
    s.channels = {r: FakeChannel(inbox) for r, inbox in enumerate(inboxes)}
    return s


MASK = np.array([True, False, True, True])


def test_zero_fill_averages_each_entry_over_workers_that_delivered_it():
    s = server(
        "zero", [[(np.full(4, 2.0, np.float32), None)], [(np.full(4, 4.0, np.float32), MASK)]]
    )
    s.step(0)
    assert s.params.tolist() == [-3.0, -2.0, -3.0, -3.0]  # entry 1: only worker 0 counted


def test_stale_fill_reuses_that_workers_previous_gradient():
    s = server(
        "stale",
        [
            [(np.full(4, 2.0, np.float32), None), (np.full(4, 2.0, np.float32), None)],
            [(np.full(4, 4.0, np.float32), None), (np.full(4, 8.0, np.float32), MASK)],
        ],
    )
    s.step(0)  # both full: mean 3
    s.step(1)  # worker 1 lost entry 1 -> its previous 4.0 is used there
    assert s.params.tolist() == [-3 - 5.0, -3 - 3.0, -3 - 5.0, -3 - 5.0]


def test_dropped_entries_travel_as_nan_and_are_not_averaged():
    rng = np.random.default_rng(1)
    grad = np.ones(1000, np.float32)
    sent = drop_entries(grad, 0.25, rng, np.nan)
    assert 200 < np.isnan(sent).sum() < 300 and not np.isnan(grad).any()
    mask = valid_mask(sent, MessageStats(0, 4000, 0.0))
    assert mask.sum() == 1000 - np.isnan(sent).sum()
    s = server(
        "zero",
        [
            [(np.where(np.arange(4) == 2, np.nan, 1.0).astype(np.float32), None)],
            [(np.full(4, 3.0, np.float32), None)],
        ],
    )
    s.step(0)
    assert s.params.tolist() == [-2.0, -2.0, -3.0, -2.0]
