"""The ecosystem baseline: torch.distributed allreduce over gloo.

gloo opens its own TCP connections; inside Mininet it must be told which interface
to use (GLOO_SOCKET_IFNAME, set by the job launcher), because the hostname resolves
outside the host's namespace. Dropped entries (`drop_fraction`) are NaN, as in the
ring and at the parameter server; the sum of an entry any worker dropped is NaN on
every worker, and `fill` treats it as the ring does (``zero``: no gradient for it
this step; ``stale``: the previous averaged gradient). gloo cannot count per entry,
so an entry is never averaged over fewer than W workers.
"""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from testbed.training.messages import Message, drop_entries
from testbed.transports import MessageStats


class GlooAllreduce:
    """One worker of a gloo process group; `exchange` = allreduce + local SGD step."""

    def __init__(
        self,
        master: list,
        rank: int,
        world: int,
        lr: float,
        momentum: float,
        drop_fraction: float = 0.0,
        seed: int = 0,
        fill: str = "zero",
    ):
        ip, port = master
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{ip}:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=300),
        )
        self.rank, self.world = rank, world
        self.lr, self.momentum = lr, momentum
        self.drop_fraction, self.fill = drop_fraction, fill
        self.averaged: np.ndarray | None = None
        self.rng = np.random.default_rng(seed)
        self.velocity: np.ndarray | None = None

    def exchange(self, iteration: int, grad: np.ndarray, params: np.ndarray) -> list[Message]:
        if self.drop_fraction:
            grad = drop_entries(grad, self.drop_fraction, self.rng, np.nan)
        tensor = torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float32).copy())
        start = time.time()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        elapsed = time.time() - start
        averaged = tensor.numpy() / self.world
        if self.velocity is None:
            self.velocity = np.zeros_like(averaged)
            self.averaged = np.zeros_like(averaged)
        missing = np.isnan(averaged)
        if missing.any():
            averaged[missing] = self.averaged[missing] if self.fill == "stale" else 0.0
        self.averaged = averaged
        self.velocity *= self.momentum
        self.velocity += averaged
        params -= self.lr * self.velocity
        return [
            Message(
                "all",
                f"worker{self.rank}",
                "allreduce",
                MessageStats(iteration, tensor.numel() * 4, elapsed),
            )
        ]

    def close(self) -> None:
        dist.destroy_process_group()
