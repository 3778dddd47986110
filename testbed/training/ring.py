"""Ring allreduce over transport channels (Baidu/Horovod style), for tcp and blt.

W workers form a ring; each connects to its successor (the channel it sends on)
and accepts its predecessor (the channel it receives on), two separate connections
even when W = 2. The gradient is cut into W chunks: W-1 reduce-scatter steps add
the predecessor's partial sum of one chunk to the local one, then W-1 allgather
steps pass the finished chunks around. Each worker divides by W and applies SGD
with momentum locally.

Missing entries (lost or dropped on purpose): in reduce-scatter, ``zero`` adds
nothing for them (the sum is still divided by W, so the average shrinks), ``stale``
adds the value received for that chunk and step in the previous iteration; in
allgather they keep the worker's previous averaged gradient (``stale``) or 0
(``zero``: no update for that entry).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from testbed.training.messages import Message, drop_entries, valid_mask
from testbed.training.ps import CONNECT_TIMEOUT_S, shard_bounds
from testbed.transports import Transport

# Message ids: iteration * STRIDE + phase/step code, unique per channel and iteration.
STRIDE = 2048


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
        self.rng = np.random.default_rng(seed)
        self.velocity: np.ndarray | None = None
        self.stale: dict[int, np.ndarray] = {}
        self.averaged: np.ndarray | None = None

    def exchange(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        """Allreduce-average `grad`, then update `params` in place. Returns messages received."""
        if self.drop_fraction:
            grad = drop_entries(grad, self.drop_fraction, self.rng, 0.0)
        acc = grad.astype(np.float32).copy()
        if self.averaged is None:
            self.averaged = np.zeros_like(acc)
            self.velocity = np.zeros_like(acc)
        chunks = shard_bounds(len(acc), self.size)
        received = []
        for step in range(self.size - 1):  # reduce-scatter
            send_c, recv_c = (self.rank - step) % self.size, (self.rank - step - 1) % self.size
            stats, buf = self._swap(iteration * STRIDE + step, acc, chunks[send_c], chunks[recv_c])
            lo, hi = chunks[recv_c]
            acc[lo:hi] += self._fill_reduce(step, buf, stats)
            received.append(self._message("reduce", stats))
        for step in range(self.size - 1):  # allgather
            send_c, recv_c = (self.rank - step + 1) % self.size, (self.rank - step) % self.size
            code = iteration * STRIDE + self.size + step
            stats, buf = self._swap(code, acc, chunks[send_c], chunks[recv_c])
            lo, hi = chunks[recv_c]
            previous = self.averaged[lo:hi] * self.size if self.fill == "stale" else 0.0
            mask = valid_mask(buf, stats)
            acc[lo:hi] = buf if mask is None else np.where(mask, buf, previous)
            received.append(self._message("gather", stats))
        np.divide(acc, self.size, out=self.averaged)
        self.velocity *= self.momentum
        self.velocity += self.averaged
        params -= self.lr * self.velocity
        return received

    def _swap(self, msg_id: int, acc: np.ndarray, send: tuple[int, int], recv: tuple[int, int]):
        """Send one chunk to the successor while receiving one from the predecessor."""
        buf = np.zeros(recv[1] - recv[0], dtype=np.float32)
        sending = self.pool.submit(self.next.send, msg_id, acc[send[0] : send[1]].copy())
        stats = self.prev.recv(msg_id, buf)
        sending.result()
        return stats, buf

    def _fill_reduce(self, step: int, buf: np.ndarray, stats) -> np.ndarray:
        mask = valid_mask(buf, stats)
        if mask is None:
            self.stale[step] = buf
            return buf
        fallback = self.stale.get(step, 0.0) if self.fill == "stale" else 0.0
        filled = np.where(mask, buf, fallback)
        self.stale[step] = filled
        return filled

    def _message(self, kind: str, stats) -> Message:
        prev = (self.rank - 1) % self.size
        return Message(f"worker{prev}", f"worker{self.rank}", kind, stats)

    def close(self) -> None:
        self.pool.shutdown()
        self.next.close()
        self.prev.close()
