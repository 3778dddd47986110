"""Parameter-server traffic over MLNET's aggregation trees (`testbed.jobs.trees`).

Each server shard has its own tree; a worker plays its part in every tree at once
(one thread per tree). Per iteration and tree, staleness 0:

- push: a leaf sends its gradient shard to its parent. An aggregator waits for all
  its children, adds their contributions to its own and sends one message up. The
  server divides the total by the per-entry count and steps, as the flat PS does;
- pull: the server sends the new shard to its children, and every aggregator
  forwards what it received to its own children before it applies it (multicast).

Counting what arrived. With a reliable transport and nothing dropped, every entry of
a subtree's sum holds exactly `subtree` gradients, so a plain float32 sum suffices and
the bytes on every tree edge equal a flat push. When entries can be missing (blt with
``loss_bound > 0``, or ``drop_fraction``), an aggregator's message carries its sum
followed by one count byte per entry, four packed into each float32 word (+25%). Word
i//4 of the count tail travels in another datagram than entry i, so an entry counts
only if both arrived; otherwise the whole entry is missing for this edge. Counts stay
<= 127 (a spec rule caps such jobs at 127 workers), so a packed word never has an
all-ones exponent: it is never a NaN, and NaN keeps its one meaning, "missing".

Fill, per tree edge (the flat PS's rules, applied where the data arrives): ``zero``
leaves a missing entry out of the sum and the count; ``stale`` substitutes that
child's previous contribution (sum and count) for it. For a leaf this is exactly the
flat rule (the worker's previous gradient). Pull: an entry an aggregator did not
receive is forwarded as NaN, so below it every worker keeps its previous value, as a
flat worker does for an entry it did not get.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from testbed.spec.schema import MAX_TREE_COUNT
from testbed.training.messages import Message, drop_entries
from testbed.training.ps import CONNECT_TIMEOUT_S, ShardSGD, shard_bounds
from testbed.transports import Channel, MessageStats, Transport

MAX_COUNT = MAX_TREE_COUNT  # per-entry count limit of the one-byte encoding (see the docstring)


@dataclass(frozen=True)
class Edges:
    """One node's place in the tree of one shard (as the harness plans it)."""

    shard: int
    children: list[list[int]]  # [worker rank, workers in its subtree]
    parent: list | None = None  # [ip, port] of the parent (None at the server)
    parent_label: str = ""  # server0 | worker3
    port: int = 0  # where this worker listens for its children in this tree


def count_words(n: int) -> int:
    """float32 words holding n one-byte counts."""
    return (n + 3) // 4


def pack(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`total` followed by its per-entry counts, four bytes to a float32 word."""
    if counts.max(initial=0) > MAX_COUNT:
        raise ValueError(f"per-entry count {counts.max()} > {MAX_COUNT}")
    tail = np.zeros(4 * count_words(len(total)), dtype=np.uint8)
    tail[: len(total)] = counts
    return np.concatenate([total, tail.view(np.float32)])


def decode(
    buf: np.ndarray, mask: np.ndarray | None, n: int, subtree: int, counted: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, counts, valid) of one child's message of an n-entry shard."""
    if counted:
        counts = buf[n:].view(np.uint8)[:n].astype(np.float32)
        valid = np.ones(n, bool) if mask is None else mask[:n] & mask[n:][np.arange(n) // 4]
        values = buf[:n]
    else:
        values = buf
        valid = ~np.isnan(buf) if mask is None else mask & ~np.isnan(buf)
        counts = np.full(n, float(subtree), dtype=np.float32)
    return np.where(valid, values, 0).astype(np.float32), np.where(valid, counts, 0), valid


class Gather:
    """Adds up one shard's contributions of a node's children (and its own)."""

    def __init__(self, n: int, children: list[list[int]], counted: bool, fill: str):
        self.n, self.fill = n, fill
        self.subtree = dict(map(tuple, children))
        self.counted = {r: counted and size > 1 for r, size in self.subtree.items()}
        self.buffers = {
            r: np.zeros(n + (count_words(n) if self.counted[r] else 0), np.float32)
            for r in self.subtree
        }
        # stale: each source's previous (values, counts); before the first step a
        # zero gradient from the whole subtree, as the flat PS starts from zeros.
        self.previous = {
            r: (np.zeros(n, np.float32), np.full(n, float(size), np.float32))
            for r, size in {**self.subtree, "own": 1}.items()
        }

    def add(self, source, buf, mask, total: np.ndarray, counts: np.ndarray) -> None:
        """Add one decoded contribution (`source`: child rank or "own") in place."""
        counted = self.counted.get(source, False)
        values, count, valid = decode(buf, mask, self.n, self.subtree.get(source, 1), counted)
        if self.fill == "stale":
            old_values, old_count = self.previous[source]
            values = np.where(valid, values, old_values)
            count = np.where(valid, count, old_count)
            self.previous[source] = (values, count)
        total += values
        counts += count


class TreeWorker:
    """A worker's side of every shard's tree: leaf in some, aggregator in others."""

    def __init__(
        self,
        transport: Transport,
        ip: str,
        rank: int,
        edges: list[dict],
        counted: bool,
        fill: str,
        drop_fraction: float = 0.0,
        seed: int = 0,
        share_mbps: float | None = None,
    ):
        self.rank, self.counted, self.fill = rank, counted, fill
        self.edges = [Edges(**e) for e in edges]
        self.drop_fraction, self.rng = drop_fraction, np.random.default_rng(seed)
        self.pool = ThreadPoolExecutor(max_workers=len(self.edges))
        listeners = {e.shard: transport.listen(ip, e.port) for e in self.edges if e.children}

        def link(e: Edges) -> tuple[Channel, dict[int, Channel]]:
            up = transport.connect(*e.parent, rank, CONNECT_TIMEOUT_S)
            down = {}
            if e.children:
                down = listeners[e.shard].accept(len(e.children), CONNECT_TIMEOUT_S)
            for ch in [up, *down.values()]:
                if share_mbps:
                    ch.set_share(share_mbps)
            return up, down

        try:
            self.links = list(self.pool.map(link, self.edges))
        finally:
            for listener in listeners.values():
                listener.close()
        self.gathers: list[Gather] = []
        self.bounds: list[tuple[int, int]] = []

    def exchange(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        """Push `grad` up every tree, pull new `params` (updated in place) down it."""
        if not self.bounds:
            self.bounds = shard_bounds(len(params), len(self.edges))
            self.gathers = [
                Gather(hi - lo, e.children, self.counted, self.fill)
                for e, (lo, hi) in zip(self.edges, self.bounds)
            ]
        if self.drop_fraction:
            grad = drop_entries(grad, self.drop_fraction, self.rng, np.nan)
        per_tree = self.pool.map(
            lambda s: self._one(s, iteration, grad, params), range(len(self.edges))
        )
        return [m for messages in per_tree for m in messages]

    def _one(self, s: int, it: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        edge, (up, down), gather = self.edges[s], self.links[s], self.gathers[s]
        lo, hi = self.bounds[s]
        me = f"worker{self.rank}"
        received = []
        if down:
            total = np.zeros(hi - lo, np.float32)
            counts = np.zeros(hi - lo, np.float32)
            gather.add("own", grad[lo:hi], None, total, counts)
            for rank, stats in _receive_all(down, it, gather.buffers):
                gather.add(rank, gather.buffers[rank], stats.mask, total, counts)
                received.append(Message(f"worker{rank}", me, "push", stats))
            up.send(it, pack(total, counts) if self.counted else total)
        else:
            up.send(it, grad[lo:hi])
        fresh = np.full(hi - lo, np.nan, np.float32)  # what does not arrive stays NaN
        received.append(Message(edge.parent_label, me, "pull", up.recv(it, fresh)))
        _send_all(down, it, fresh)
        np.copyto(params[lo:hi], fresh, where=~np.isnan(fresh))
        return received

    def close(self) -> None:
        self.pool.shutdown()
        for up, down in getattr(self, "links", []):
            for ch in [up, *down.values()]:
                ch.close()


class TreeServer:
    """One server shard at the root of its tree: only its children talk to it."""

    def __init__(
        self,
        transport: Transport,
        ip: str,
        port: int,
        edges: dict,
        shard: np.ndarray,
        lr: float,
        momentum: float,
        counted: bool,
        fill: str,
        share_mbps: float | None = None,
    ):
        self.edges = Edges(**edges)
        self.rank = self.edges.shard
        self.listener = transport.listen(ip, port)
        self.sgd = ShardSGD(shard, lr, momentum)
        self.gather = Gather(len(shard), self.edges.children, counted, fill)
        self.share_mbps = share_mbps
        self.channels: dict[int, Channel] = {}
        self.counts = np.zeros(0, np.float32)

    def accept(self) -> None:
        """Wait for the server's children (not every worker) to connect."""
        self.channels = self.listener.accept(len(self.edges.children), CONNECT_TIMEOUT_S)
        for channel in self.channels.values():
            if self.share_mbps:
                channel.set_share(self.share_mbps)

    def step(self, iteration: int) -> list[Message]:
        """Gather the children's sums, step on their mean, send the shard down."""
        n = len(self.sgd.params)
        total, counts = np.zeros(n, np.float32), np.zeros(n, np.float32)
        received = []
        for rank, stats in _receive_all(self.channels, iteration, self.gather.buffers):
            self.gather.add(rank, self.gather.buffers[rank], stats.mask, total, counts)
            received.append(Message(f"worker{rank}", f"server{self.rank}", "push", stats))
        self.counts = counts  # per entry: how many workers' gradients the mean holds
        np.divide(total, counts, out=total, where=counts > 0)
        self.sgd.step(total)
        _send_all(self.channels, iteration, self.sgd.params)
        return received

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
        self.listener.close()


def _receive_all(
    channels: dict[int, Channel], it: int, buffers: dict[int, np.ndarray]
) -> list[tuple[int, MessageStats]]:
    """Receive message `it` from every channel at once (a loss-tolerant transport
    must drain all of them while they arrive); results in rank order, so that sums
    are added in the same order every run."""
    ranks = sorted(channels)
    with ThreadPoolExecutor(max_workers=max(1, len(ranks))) as pool:
        stats = list(pool.map(lambda r: channels[r].recv(it, buffers[r]), ranks))
    return list(zip(ranks, stats))


def _send_all(channels: dict[int, Channel], it: int, data: np.ndarray) -> None:
    """Send `data` as message `it` on every channel at once (paced channels would
    otherwise queue behind each other)."""
    if len(channels) <= 1:
        for ch in channels.values():
            ch.send(it, data)
        return
    with ThreadPoolExecutor(max_workers=len(channels)) as pool:
        list(pool.map(lambda ch: ch.send(it, data), channels.values()))
