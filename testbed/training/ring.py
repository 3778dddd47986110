"""Ring allreduce over transport channels (Baidu/Horovod style), for tcp and blt.

W workers form a ring; each connects to its successor (the channel it sends on)
and accepts its predecessor (the channel it receives on), two separate connections
even when W = 2. The gradient is cut into W chunks: W-1 reduce-scatter steps add
the predecessor's partial sum of one chunk to the local one, then W-1 allgather
steps pass the finished chunks around. Each worker divides by W and applies SGD
with momentum locally.

Replicas stay bit-identical, also under loss. The design: an entry is *missing*
(NaN) as soon as one of its W contributions is, and every worker agrees on which
entries are missing before it updates.

- Entries dropped on purpose (`drop_fraction`) are NaN, as at the parameter server
  and in gloo. Entries a lossy transport did not deliver become NaN on arrival.
- NaN propagates by IEEE arithmetic: in reduce-scatter, a partial sum with a missing
  contribution is NaN, so no sum is ever divided by W with contributions left out
  (a lost partial sum holds the contributions of several workers, and there is no
  cheap way to send per-entry counts with it). In allgather a worker forwards what
  it received, NaN included, never a substitute of its own.
- Because NaN is forwarded, the last worker on a chunk's allgather path holds the
  union of everything lost on that chunk. With a lossy transport (blt with
  ``loss_bound > 0``), one more ring pass carries these missing-entry bitmaps
  (1 bit per entry, ~3% of the gradient) *reliably* (``recv(reliable=True)``), so
  every worker marks the same entries missing. tcp and lossless blt deliver every
  NaN themselves and skip the pass.
- `fill` then treats the agreed entries identically everywhere: ``zero`` gives them
  no gradient this step, ``stale`` reuses the previous averaged gradient, which is
  itself identical on every worker.

Every worker therefore computes the same floats in the same order, and
`param_divergence` (iterations.csv) is 0. The price of this choice: at the
parameter server `zero` averages an entry over the workers that delivered it, while
here an entry any contribution misses is left out of the step for everyone (gloo,
which cannot count per entry either, does the same). With W workers and a
per-message loss fraction q, an entry survives with probability about
(1 - q)^(2W - 2).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from testbed.training.messages import Message, drop_entries, valid_mask
from testbed.training.ps import CONNECT_TIMEOUT_S, shard_bounds
from testbed.transports import Transport


def message_id(iteration: int, size: int, phase: int, step: int) -> int:
    """The id of step `step` of `phase` (0 reduce-scatter, 1 allgather, 2 agree) of
    `iteration` on a ring of `size` workers. An iteration uses at most 3 (size - 1)
    ids, so ids never collide across phases or iterations, for any ring size; the
    largest (10^6 iterations, 1,024 workers) fits the transports' 32-bit field."""
    return (iteration * 3 + phase) * size + step


class RingAllreduce:
    """One worker's side of the ring; `exchange` runs one allreduce + SGD step."""

    def __init__(
        self,
        transport: Transport,
        ring: list[list],
        rank: int,
        lr: float,
        momentum: float,
        fill: str = "zero",
        drop_fraction: float = 0.0,
        seed: int = 0,
        share_mbps: float | None = None,
        lossy: bool = False,
    ):
        self.rank, self.size = rank, len(ring)
        ip, port = ring[rank]
        listener = transport.listen(ip, port)
        pool = ThreadPoolExecutor(max_workers=2)
        succ = ring[(rank + 1) % self.size]
        accepted = pool.submit(listener.accept, 1, CONNECT_TIMEOUT_S)
        self.next = transport.connect(succ[0], succ[1], rank, CONNECT_TIMEOUT_S)
        self.prev = next(iter(accepted.result().values()))
        listener.close()
        if share_mbps:
            self.next.set_share(share_mbps)
            self.prev.set_share(share_mbps)
        self.pool = pool
        self.lr, self.momentum, self.fill = lr, momentum, fill
        self.drop_fraction = drop_fraction
        self.lossy = lossy  # the transport may leave entries out: agree on them
        self.rng = np.random.default_rng(seed)
        self.velocity: np.ndarray | None = None
        self.averaged: np.ndarray | None = None

    def exchange(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        """Allreduce-average `grad`, then update `params` in place. Returns messages received."""
        acc = grad.astype(np.float32)  # a copy: the ring sums into it
        if self.drop_fraction:
            acc = drop_entries(acc, self.drop_fraction, self.rng, np.nan)
        if self.averaged is None:
            self.averaged = np.zeros_like(acc)
            self.velocity = np.zeros_like(acc)
        chunks = shard_bounds(len(acc), self.size)
        received = []
        for step in range(self.size - 1):  # reduce-scatter
            send_c, recv_c = (self.rank - step) % self.size, (self.rank - step - 1) % self.size
            code = message_id(iteration, self.size, 0, step)
            stats, buf = self._swap(code, acc, chunks[send_c], chunks[recv_c])
            lo, hi = chunks[recv_c]
            acc[lo:hi] += _missing_as_nan(buf, stats)
            received.append(self._message("reduce", stats))
        for step in range(self.size - 1):  # allgather
            send_c, recv_c = (self.rank - step + 1) % self.size, (self.rank - step) % self.size
            code = message_id(iteration, self.size, 1, step)
            stats, buf = self._swap(code, acc, chunks[send_c], chunks[recv_c])
            lo, hi = chunks[recv_c]
            acc[lo:hi] = _missing_as_nan(buf, stats)
            received.append(self._message("gather", stats))
        if self.lossy:
            received += self._agree(iteration, acc, chunks)
        self._update(acc, params)
        return received

    def _agree(self, iteration: int, acc: np.ndarray, chunks) -> list[Message]:
        """Make every worker's NaN set the same: worker r was last on chunk r+2's
        allgather path, so it knows all that chunk lost; pass those bitmaps around."""
        received = []
        for step in range(self.size - 1):
            send_c, recv_c = (self.rank + 2 - step) % self.size, (self.rank + 1 - step) % self.size
            lo, hi = chunks[send_c]
            bits = _pack(np.isnan(acc[lo:hi]))
            lo, hi = chunks[recv_c]
            buf = np.zeros(_packed_len(hi - lo), dtype=np.float32)
            code = message_id(iteration, self.size, 2, step)
            stats = self._send_recv(code, bits, buf, reliable=True)
            acc[lo:hi][_unpack(buf, hi - lo)] = np.nan
            received.append(self._message("agree", stats))
        return received

    def _update(self, acc: np.ndarray, params: np.ndarray) -> None:
        """Average, fill the agreed missing entries, momentum SGD step."""
        missing = np.isnan(acc)
        fresh = acc / self.size
        if missing.any():
            fresh[missing] = self.averaged[missing] if self.fill == "stale" else 0.0
        self.averaged = fresh
        self.velocity *= self.momentum
        self.velocity += self.averaged
        params -= self.lr * self.velocity

    def _swap(self, msg_id: int, acc: np.ndarray, send: tuple[int, int], recv: tuple[int, int]):
        """Send one chunk to the successor while receiving one from the predecessor."""
        buf = np.full(recv[1] - recv[0], np.nan, dtype=np.float32)
        return self._send_recv(msg_id, acc[send[0] : send[1]].copy(), buf), buf

    def _send_recv(self, msg_id: int, payload: np.ndarray, buf: np.ndarray, reliable=False):
        """Send `payload` to the successor while receiving into `buf` from the predecessor."""
        sending = self.pool.submit(self.next.send, msg_id, payload)
        stats = self.prev.recv(msg_id, buf, reliable=reliable)
        sending.result()
        return stats

    def _message(self, kind: str, stats) -> Message:
        prev = (self.rank - 1) % self.size
        return Message(f"worker{prev}", f"worker{self.rank}", kind, stats)

    def close(self) -> None:
        self.pool.shutdown()
        self.next.close()
        self.prev.close()


def _missing_as_nan(buf: np.ndarray, stats) -> np.ndarray:
    """`buf` with every entry that did not arrive (or arrived as NaN) set to NaN."""
    mask = valid_mask(buf, stats)
    if mask is not None:
        buf[~mask] = np.nan
    return buf


def _packed_len(entries: int) -> int:
    """float32 words that carry one bit per entry."""
    return -(-entries // 32)


def _pack(missing: np.ndarray) -> np.ndarray:
    """One bit per entry, carried as float32 words (transports move raw bytes)."""
    bits = np.packbits(missing)
    words = np.zeros(4 * _packed_len(len(missing)), dtype=np.uint8)
    words[: len(bits)] = bits
    return words.view(np.float32)


def _unpack(words: np.ndarray, entries: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8))[:entries].astype(bool)
