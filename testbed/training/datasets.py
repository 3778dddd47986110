"""Datasets that ship inside installed packages (no downloads at run time).

Each loader returns a `Dataset` with a seeded train/test split; workers take
disjoint shards of the training set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Arrays of one dataset; `shape` is the per-example input shape (C, H, W) or (D,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: tuple[int, ...]
    classes: int

    def shard(self, rank: int, workers: int) -> np.ndarray:
        """Indices of worker `rank`'s disjoint share of the training set."""
        return np.arange(rank, len(self.x_train), workers)


def load_digits(seed: int) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), 80/20 split."""
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return Dataset("digits", x[train], y[train], x[test], y[test], (1, 8, 8), 10)


DATASETS: dict[str, Callable[[int], Dataset]] = {"digits": load_digits}


def load(name: str, seed: int) -> Dataset:
    """Load dataset `name` with the split fixed by `seed`."""
    return DATASETS[name](seed)


class BatchSampler:
    """Endless mini-batches from one shard, reshuffled every epoch (seeded per rank)."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int):
        self.indices = indices
        self.batch_size = min(batch_size, len(indices))
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(indices)
        self.pos = 0

    def next(self) -> np.ndarray:
        """Indices of the next batch."""
        if self.pos + self.batch_size > len(self.order):
            self.order = self.rng.permutation(self.indices)
            self.pos = 0
        batch = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch
