"""Datasets that ship inside installed packages (no downloads at run time).

Each loader returns a `Dataset` with a seeded train/test split; workers take
disjoint shards of the training set.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Arrays of one dataset.

    `shape` is the per-example input shape: (C, H, W) for images, (L,) for token
    sequences, (2,) for (user, item) pairs. `classes` is 0 for regression targets.
    `sizes` holds vocabulary/table sizes a model needs (e.g. users, items, tokens).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: tuple[int, ...]
    classes: int
    sizes: dict = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return self.classes == 0

    def shard(self, rank: int, workers: int) -> np.ndarray:
        """Indices of worker `rank`'s disjoint share of the training set."""
        return np.arange(rank, len(self.x_train), workers)


def load_digits(seed: int) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), 80/20 split.

    Read straight from the CSV that ships inside scikit-learn, as its own loader does,
    without importing scikit-learn: that import pulls in scipy.stats and pandas, and
    costs every training process ~1 s here and ~22 s in the TCG-emulated CI guest.
    """
    raw = np.loadtxt(_sklearn_data("digits.csv.gz"), delimiter=",")  # 64 pixels, label
    x = (raw[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)[:, None, :, :]
    y = raw[:, -1].astype(np.int64)
    return Dataset("digits", *_split(x, y, seed), (1, 8, 8), 10)


def _sklearn_data(name: str) -> Path:
    """A data file bundled with scikit-learn, found without importing the package."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed (`sudo make bootstrap`)")
    return Path(spec.submodule_search_locations[0], "datasets", "data", name)


def _split(x: np.ndarray, y: np.ndarray, seed: int, train: float = 0.8):
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(train * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def load_ratings(
    seed: int, users: int = 600, items: int = 300, rank: int = 8, observed: float = 0.2
) -> Dataset:
    """Synthetic MovieLens-like ratings 1..5 from a rank-`rank` user x item matrix.

    The generating factors are fixed (seed 0) so every seed sees the same problem;
    `seed` only picks the train/test split.
    """
    rng = np.random.default_rng(0)
    u = rng.normal(size=(users, rank)) / np.sqrt(rank)
    v = rng.normal(size=(items, rank))
    scores = 3 + 1.2 * (u @ v.T) + 0.3 * rng.normal(size=(users, items))
    ratings = np.clip(np.rint(scores), 1, 5).astype(np.float32)
    mask = rng.random((users, items)) < observed
    pairs = np.argwhere(mask).astype(np.int64)
    x_train, y_train, x_test, y_test = _split(pairs, ratings[mask], seed)
    return Dataset(
        "ratings", x_train, y_train, x_test, y_test, (2,), 0, {"users": users, "items": items}
    )


def load_sequences(seed: int, count: int = 4000, length: int = 6, tokens: int = 8) -> Dataset:
    """Synthetic sequence task: classify a token sequence by its first token.

    The answer sits at the start, so a recurrent model must carry it through the
    whole sequence (a memory task). Fixed generator (seed 0); `seed` picks the split.
    """
    rng = np.random.default_rng(0)
    x = rng.integers(0, tokens, size=(count, length)).astype(np.int64)
    y = x[:, 0].copy()
    x_train, y_train, x_test, y_test = _split(x, y, seed)
    return Dataset(
        "sequences", x_train, y_train, x_test, y_test, (length,), tokens, {"tokens": tokens}
    )


DATASETS: dict[str, Callable[[int], Dataset]] = {
    "digits": load_digits,
    "ratings": load_ratings,
    "sequences": load_sequences,
}


@functools.cache
def load(name: str, seed: int) -> Dataset:
    """Load dataset `name` with the split fixed by `seed` (once per process: the
    forkserver loads it before forking, and its children share the arrays)."""
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
