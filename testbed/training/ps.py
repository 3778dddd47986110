"""Synchronous parameter-server data parallelism, sharded over `servers`.

The flat parameter vector is cut into contiguous shards, one per server. Each
iteration every worker pushes its gradient shard to each server; each server waits
for all workers, averages (per entry, over the workers whose entry arrived),
applies SGD with momentum to its shard and sends the new shard back (pull).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from testbed.transports import Channel, MessageStats, Transport

CONNECT_TIMEOUT_S = 120.0


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) of each shard of an n-entry vector, sizes differing by at most one."""
    edges = np.linspace(0, n, shards + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def average(buffers: list[np.ndarray], stats: list[MessageStats], out: np.ndarray) -> np.ndarray:
    """Per-entry mean over the workers that delivered each entry (0 where none did)."""
    out[:] = 0
    counts = np.zeros(out.shape, dtype=np.float32)
    for buf, st in zip(buffers, stats):
        if st.mask is None:
            out += buf
            counts += 1
        else:
            out += np.where(st.mask, buf, 0)
            counts += st.mask
    np.divide(out, counts, out=out, where=counts > 0)
    return out


class PSWorker:
    """Worker side: push gradient shards, pull parameter shards."""

    def __init__(self, transport: Transport, servers: list[list], rank: int):
        self.channels: list[Channel] = [
            transport.connect(ip, port, rank, CONNECT_TIMEOUT_S) for ip, port in servers
        ]
        self.pool = ThreadPoolExecutor(max_workers=len(self.channels))
        self.bounds: list[tuple[int, int]] = []

    def step(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[MessageStats]:
        """Exchange one iteration; `params` is updated in place. Returns pull stats."""
        if not self.bounds:
            self.bounds = shard_bounds(len(params), len(self.channels))

        def exchange(i: int) -> MessageStats:
            lo, hi = self.bounds[i]
            self.channels[i].send(iteration, grad[lo:hi])
            return self.channels[i].recv(iteration, params[lo:hi])

        return list(self.pool.map(exchange, range(len(self.channels))))

    def close(self) -> None:
        self.pool.shutdown()
        for ch in self.channels:
            ch.close()


class PSServer:
    """One server shard: owns params[lo:hi] and its momentum buffer."""

    def __init__(self, transport: Transport, ip: str, port: int, workers: int,
                 shard: np.ndarray, lr: float, momentum: float):
        self.listener = transport.listen(ip, port)
        self.workers = workers
        self.params = shard.astype(np.float32).copy()
        self.velocity = np.zeros_like(self.params)
        self.lr, self.momentum = lr, momentum
        self.channels: dict[int, Channel] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.buffers = [np.zeros_like(self.params) for _ in range(workers)]
        self.mean = np.zeros_like(self.params)

    def accept(self) -> None:
        """Wait for every worker to connect."""
        self.channels = self.listener.accept(self.workers, CONNECT_TIMEOUT_S)

    def step(self, iteration: int) -> list[MessageStats]:
        """Gather gradients, update the shard, send it back. Returns push stats by rank."""
        ranks = sorted(self.channels)
        stats = list(self.pool.map(
            lambda r: self.channels[r].recv(iteration, self.buffers[r]), ranks))
        average([self.buffers[r] for r in ranks], stats, self.mean)
        self.velocity *= self.momentum
        self.velocity += self.mean
        self.params -= self.lr * self.velocity
        list(self.pool.map(lambda r: self.channels[r].send(iteration, self.params), ranks))
        return stats

    def close(self) -> None:
        self.pool.shutdown()
        for ch in self.channels.values():
            ch.close()
        self.listener.close()
