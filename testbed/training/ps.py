"""Synchronous parameter-server data parallelism, sharded over `servers`.

The flat parameter vector is cut into contiguous shards, one per server. Each
iteration every worker pushes its gradient shard to each server; each server waits
for all workers, averages, applies SGD with momentum to its shard and sends the new
shard back (pull).

Entries that did not arrive (a loss-tolerant transport) or that the worker dropped
on purpose (`drop_fraction`, sent as NaN) are filled per the job's `fill` policy at
the server: ``zero`` averages each entry over the workers that delivered it,
``stale`` reuses that worker's previous gradient for it. Parameters a worker did not
receive on pull keep their previous value (zeroing weights is never meaningful).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from testbed.training.messages import Message, drop_entries, valid_mask
from testbed.transports import Channel, Transport

CONNECT_TIMEOUT_S = 120.0


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) of each shard of an n-entry vector, sizes differing by at most one."""
    edges = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def average(
    buffers: list[np.ndarray], masks: list[np.ndarray | None], out: np.ndarray
) -> np.ndarray:
    """Per-entry mean over the buffers whose entry is valid (0 where none is)."""
    out[:] = 0
    counts = np.zeros(out.shape, dtype=np.float32)
    for buf, mask in zip(buffers, masks):
        if mask is None:
            out += buf
            counts += 1
        else:
            out += np.where(mask, buf, 0)
            counts += mask
    np.divide(out, counts, out=out, where=counts > 0)
    return out


@dataclass(frozen=True)
class LostWorker:
    """A worker the server stopped waiting for (on_failure: continue)."""

    rank: int
    iteration: int
    reason: str


class ShardSGD:
    """SGD with momentum on one server's shard of the parameters."""

    def __init__(self, shard: np.ndarray, lr: float, momentum: float):
        self.params = shard.astype(np.float32).copy()
        self.velocity = np.zeros_like(self.params)
        self.lr, self.momentum = lr, momentum

    def step(self, mean: np.ndarray) -> np.ndarray:
        """Apply the mean gradient; return the new parameters."""
        self.velocity *= self.momentum
        self.velocity += mean
        self.params -= self.lr * self.velocity
        return self.params


class PSWorker:
    """Worker side: push gradient shards, pull parameter shards."""

    def __init__(
        self,
        transport: Transport,
        servers: list[list],
        rank: int,
        drop_fraction: float = 0.0,
        seed: int = 0,
        shares: list[float] | None = None,
    ):
        self.channels: list[Channel] = [
            transport.connect(ip, port, rank, CONNECT_TIMEOUT_S) for ip, port in servers
        ]
        for channel, share in zip(self.channels, shares or []):
            channel.set_share(share)
        self.rank = rank
        self.pool = ThreadPoolExecutor(max_workers=len(self.channels))
        self.bounds: list[tuple[int, int]] = []
        self.drop_fraction = drop_fraction
        self.rng = np.random.default_rng(seed)

    def exchange(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        """Push `grad`, pull new `params` (updated in place). Returns the pulls received."""
        if not self.bounds:
            self.bounds = shard_bounds(len(params), len(self.channels))
        if self.drop_fraction:
            grad = drop_entries(grad, self.drop_fraction, self.rng, np.nan)

        def one(i: int) -> Message:
            lo, hi = self.bounds[i]
            self.channels[i].send(iteration, grad[lo:hi])
            stats = self.channels[i].recv(iteration, params[lo:hi])
            return Message(f"server{i}", f"worker{self.rank}", "pull", stats)

        return list(self.pool.map(one, range(len(self.channels))))

    def close(self) -> None:
        self.pool.shutdown()
        for ch in self.channels:
            ch.close()


class PSServer:
    """One server shard: owns params[lo:hi] and its momentum buffer."""

    def __init__(
        self,
        transport: Transport,
        ip: str,
        port: int,
        workers: int,
        shard: np.ndarray,
        lr: float,
        momentum: float,
        fill: str = "zero",
        share_mbps: float | None = None,
        rank: int = 0,
        worker_timeout_s: float | None = None,
    ):
        self.listener = transport.listen(ip, port)
        self.workers, self.rank = workers, rank
        self.sgd = ShardSGD(shard, lr, momentum)
        self.params = self.sgd.params
        self.fill = fill
        self.share_mbps = share_mbps
        # None: a dead worker fails this server (on_failure: fail); a number: the server
        # drops a worker that errs or stays silent this long and goes on without it.
        self.worker_timeout_s = worker_timeout_s
        self.lost: list[LostWorker] = []
        self.channels: dict[int, Channel] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.buffers = [np.zeros_like(self.params) for _ in range(workers)]
        self.previous = [np.zeros_like(self.params) for _ in range(workers)]
        self.mean = np.zeros_like(self.params)

    def accept(self) -> None:
        """Wait for every worker to connect."""
        self.channels = self.listener.accept(self.workers, CONNECT_TIMEOUT_S)
        if self.share_mbps:
            for channel in self.channels.values():
                channel.set_share(self.share_mbps)

    @property
    def live_workers(self) -> int:
        return len(self.channels)

    def step(self, iteration: int) -> list[Message]:
        """Gather gradients, update the shard, send it back. Returns the pushes received
        (from the workers still live: the mean is over those that delivered)."""
        received = self._gather(iteration)
        ranks = sorted(received)
        stats = [received[r] for r in ranks]
        masks = [valid_mask(self.buffers[r], st) for r, st in zip(ranks, stats)]
        if self.fill == "stale":
            for r, mask in zip(ranks, masks):
                if mask is not None:
                    np.copyto(self.buffers[r], self.previous[r], where=~mask)
                self.previous[r][:] = self.buffers[r]
            masks = [None] * len(ranks)
        average([self.buffers[r] for r in ranks], masks, self.mean)
        self.sgd.step(self.mean)
        self._scatter(iteration, ranks)
        return [
            Message(f"worker{r}", f"server{self.rank}", "push", st) for r, st in zip(ranks, stats)
        ]

    def _gather(self, iteration: int) -> dict:
        """rank -> receive stats of this iteration's pushes; under a worker timeout, a
        worker whose push failed or did not come in time is dropped first."""
        ranks = sorted(self.channels)
        futures = {
            r: self.pool.submit(self.channels[r].recv, iteration, self.buffers[r]) for r in ranks
        }
        wait(futures.values(), timeout=self.worker_timeout_s)
        received = {}
        for r, future in futures.items():
            if not future.done():
                self._drop(r, iteration, f"silent for {self.worker_timeout_s:g} s")
            elif future.exception() is not None and self.worker_timeout_s is not None:
                self._drop(r, iteration, _reason(future.exception()))
            else:
                received[r] = future.result()  # re-raises under on_failure: fail
        if not received:
            raise ConnectionError(f"iteration {iteration}: every worker is gone")
        return received

    def _scatter(self, iteration: int, ranks: list[int]) -> None:
        futures = {
            r: self.pool.submit(self.channels[r].send, iteration, self.params) for r in ranks
        }
        for r, future in futures.items():
            if future.exception() is not None and self.worker_timeout_s is not None:
                self._drop(r, iteration, _reason(future.exception()))
            else:
                future.result()

    def _drop(self, rank: int, iteration: int, reason: str) -> None:
        """Stop using worker `rank`'s channel; a thread still blocked on it is woken."""
        self.channels.pop(rank).abort()
        self.lost.append(LostWorker(rank, iteration, reason))

    def close(self) -> None:
        self.pool.shutdown()
        for ch in self.channels.values():
            ch.close()
        self.listener.close()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
