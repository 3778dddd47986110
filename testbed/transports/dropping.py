"""`transport.drop_packets: p` — lose what blt can lose, on any channel transport.

blt loses whole packets (`ENTRIES_PER_PACKET` float32 entries each), in both
directions of an exchange (push and pull, reduce and gather), and completes a message
once `1 - loss_bound` of it has arrived, so a message may arrive with up to
`loss_bound` of its packets missing. This wrapper makes that happen on purpose over a
lossless network: each packet-sized block of every received message is lost with
probability `p`, independently, and never resent. The receiver sees exactly what blt
would hand it: the delivered blocks written, the lost ones left as they were, and
the per-entry mask the sync layer fills by the job's `fill` policy. `testbed profile`
sweeps it to find the largest `p`, and so the `loss_bound`, a job tolerates.

Messages received with `reliable=True` (the ring's agreement bitmaps, which blt also
sends reliably) are never touched. Each channel draws from its own generator, seeded
from the role's seed and the peer, so a run is repeatable.

With `drop_at: sender` the same blocks are never sent (`ReducedSendTransport`): the
application sends a reduced message over a reliable transport, APNet's Fig. 3a arm
"TCP with the application dropping the same fraction". Both ends draw each message's
blocks from what both know (the listening port, the connecting rank, the direction
and the message id), so the receiver knows which blocks come without being told.
"""

from __future__ import annotations

import numpy as np

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.blt import ENTRIES_PER_PACKET, packet_count


def kept_blocks(rng: np.random.Generator, fraction: float, n: int) -> np.ndarray:
    """Per entry of an `n`-entry message: whether its packet-sized block is kept, each
    block left out with probability `fraction`."""
    kept = rng.random(packet_count(n)) >= fraction
    return np.repeat(kept, ENTRIES_PER_PACKET)[:n]


class _WrappedChannel(Channel):
    """A channel around `inner`: pacing, closing and aborting are the inner one's."""

    def __init__(self, inner: Channel, fraction: float):
        self.inner, self.fraction = inner, fraction
        self.peer = inner.peer

    def set_share(self, mbps: float) -> None:
        self.inner.set_share(mbps)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


class PacketDropChannel(_WrappedChannel):
    """A channel whose received messages lose packet-sized blocks at random."""

    def __init__(self, inner: Channel, fraction: float, rng: np.random.Generator):
        super().__init__(inner, fraction)
        self.rng = rng

    def send(self, msg_id: int, data: np.ndarray) -> None:
        self.inner.send(msg_id, data)

    def recv(self, msg_id: int, out: np.ndarray, reliable: bool = False) -> MessageStats:
        if reliable:
            return self.inner.recv(msg_id, out, reliable=True)
        scratch = np.empty_like(out)
        stats = self.inner.recv(msg_id, scratch)
        mask = kept_blocks(self.rng, self.fraction, len(out))
        if stats.mask is not None:
            mask &= stats.mask
        np.copyto(out, scratch, where=mask)
        stats.delivered_fraction = float(mask.mean()) if len(mask) else 1.0
        stats.mask = None if mask.all() else mask
        return stats


class _DroppingListener(Listener):
    def __init__(self, inner: Listener, wrap):
        self.inner, self.wrap = inner, wrap

    def accept(self, peers: int, timeout_s: float) -> dict[int, Channel]:
        return {
            rank: self.wrap(ch, rank) for rank, ch in self.inner.accept(peers, timeout_s).items()
        }

    def close(self) -> None:
        self.inner.close()


class PacketDropTransport(Transport):
    """`inner`'s channels, each losing `fraction` of every message's packets."""

    def __init__(self, inner: Transport, fraction: float, seed: int):
        self.inner, self.fraction, self.seed = inner, fraction, seed
        self.name = inner.name

    def _wrap(self, channel: Channel, *peer: int) -> Channel:
        rng = np.random.default_rng([self.seed, *peer])
        return PacketDropChannel(channel, self.fraction, rng)

    def listen(self, ip: str, port: int) -> Listener:
        return _DroppingListener(
            self.inner.listen(ip, port), lambda ch, rank: self._wrap(ch, 0, rank)
        )

    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        return self._wrap(self.inner.connect(ip, port, rank, timeout_s), 1, port)


class ReducedSendChannel(_WrappedChannel):
    """A channel whose sender leaves out packet-sized blocks of every message."""

    def __init__(self, inner: Channel, fraction: float, out_key: tuple, in_key: tuple):
        super().__init__(inner, fraction)
        self.out_key, self.in_key = out_key, in_key  # (port, rank, direction)

    def _kept(self, key: tuple, msg_id: int, n: int) -> np.ndarray:
        return kept_blocks(np.random.default_rng([*key, msg_id]), self.fraction, n)

    def send(self, msg_id: int, data: np.ndarray) -> None:
        kept = self._kept(self.out_key, msg_id, len(data))
        self.inner.send(msg_id, np.ascontiguousarray(data[kept]))

    def recv(self, msg_id: int, out: np.ndarray, reliable: bool = False) -> MessageStats:
        mask = self._kept(self.in_key, msg_id, len(out))
        scratch = np.empty(int(mask.sum()), out.dtype)
        stats = self.inner.recv(msg_id, scratch, reliable=reliable)
        if stats.mask is not None:  # the inner transport lost some of what was sent
            mask[mask] = stats.mask
            scratch = scratch[stats.mask]
        out[mask] = scratch
        stats.delivered_fraction = float(mask.mean()) if len(mask) else 1.0
        stats.mask = None if mask.all() else mask
        return stats


class ReducedSendTransport(Transport):
    """`inner`'s channels, each sending `1 - fraction` of every message's packets."""

    def __init__(self, inner: Transport, fraction: float):
        self.inner, self.fraction = inner, fraction
        self.name = inner.name

    def listen(self, ip: str, port: int) -> Listener:
        def wrap(ch: Channel, rank: int) -> Channel:
            return ReducedSendChannel(ch, self.fraction, (port, rank, 0), (port, rank, 1))

        return _DroppingListener(self.inner.listen(ip, port), wrap)

    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        channel = self.inner.connect(ip, port, rank, timeout_s)
        return ReducedSendChannel(channel, self.fraction, (port, rank, 1), (port, rank, 0))
