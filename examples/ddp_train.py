#!/usr/bin/env python3
"""A plain PyTorch DDP training script: the kind of script a user brings to the testbed.

Nothing in it knows about the testbed. It reads the environment torchrun would set
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), joins a gloo process group with
``env://``, and trains a small classifier on synthetic data (no downloads): inputs
are Gaussian, labels come from a fixed random "teacher" network, so the loss has
somewhere to go. Every iteration it prints one JSON line; the testbed turns those
into iterations.csv rows (a command job's metrics), and any other output into logs.

    torchrun --nproc-per-node 2 examples/ddp_train.py --iterations 50   # anywhere
    sudo testbed run configs/ddp_example.yaml                           # on the testbed
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def teacher(features: int, classes: int, seed: int) -> nn.Module:
    """The fixed network whose labels the student learns (the same on every rank)."""
    torch.manual_seed(seed + 10_000)
    return nn.Sequential(nn.Linear(features, 64), nn.Tanh(), nn.Linear(64, classes))


def batch(net: nn.Module, size: int, features: int, gen: torch.Generator):
    x = torch.randn(size, features, generator=gen)
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    return x, y


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    labels = teacher(args.features, args.classes, args.seed)
    torch.manual_seed(args.seed)  # the same initial student everywhere (DDP also broadcasts it)
    student = nn.Sequential(
        nn.Linear(args.features, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.classes)
    )
    model = DistributedDataParallel(student)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    data = torch.Generator().manual_seed(args.seed * 1000 + rank)  # each rank its own shard
    test_x, test_y = batch(labels, 1024, args.features, torch.Generator().manual_seed(999))
    for iteration in range(args.iterations):
        start = time.perf_counter()
        x, y = batch(labels, args.batch_size, args.features, data)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()  # DDP allreduces the gradients over gloo here
        optimizer.step()
        record = {"iteration": iteration, "train_loss": loss.item(),
                  "iter_s": time.perf_counter() - start, "world_size": world}  # fmt: skip
        if (iteration + 1) % args.eval_every == 0 or iteration + 1 == args.iterations:
            with torch.no_grad():
                record["test_accuracy"] = (model(test_x).argmax(1) == test_y).float().mean().item()
        print(json.dumps(record), flush=True)
    dist.destroy_process_group()
    if rank == 0:
        print(f"trained {args.iterations} iterations on {world} ranks")


if __name__ == "__main__":
    main()
