"""Model registry: spec `jobs[].model.name` -> a torch module for a dataset."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from testbed.training.datasets import Dataset


def mlp(spec, data: Dataset) -> nn.Module:
    """Flatten, then ReLU layers of widths `spec.hidden`, then a linear classifier."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(torch.tensor(data.shape).prod())
    for hidden in spec.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, data.classes))
    return nn.Sequential(*layers)


def cnn(spec, data: Dataset) -> nn.Module:
    """3x3 conv + ReLU per entry of `spec.channels`, a 2x2 max-pool, a linear head."""
    channels, height, width = data.shape
    layers: list[nn.Module] = []
    for out in spec.channels:
        layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
        channels = out
    layers += [
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * (height // 2) * (width // 2), data.classes),
    ]
    return nn.Sequential(*layers)


class MatrixFactorization(nn.Module):
    """rating(u, i) = <U_u, V_i> + b_u + b_i + 3 (the middle of the 1..5 scale)."""

    def __init__(self, users: int, items: int, rank: int):
        super().__init__()
        self.users = nn.Embedding(users, rank)
        self.items = nn.Embedding(items, rank)
        self.user_bias = nn.Embedding(users, 1)
        self.item_bias = nn.Embedding(items, 1)
        for table in (self.users, self.items):
            nn.init.normal_(table.weight, std=0.1)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        u, i = pairs[:, 0], pairs[:, 1]
        dot = (self.users(u) * self.items(i)).sum(dim=1)
        return dot + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1) + 3.0


class SequenceClassifier(nn.Module):
    """Embedding -> one LSTM layer -> classifier on the last hidden state."""

    def __init__(self, tokens: int, embed: int, hidden: int, classes: int):
        super().__init__()
        self.embed = nn.Embedding(tokens, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out[:, -1])


def mf(spec, data: Dataset) -> nn.Module:
    """Matrix factorization for the ratings dataset."""
    return MatrixFactorization(data.sizes["users"], data.sizes["items"], spec.rank)


def lstm(spec, data: Dataset) -> nn.Module:
    """LSTM classifier for the sequences dataset."""
    return SequenceClassifier(data.sizes["tokens"], spec.embed, spec.hidden, data.classes)


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "mf": mf, "lstm": lstm}


def loss_function(data: Dataset) -> nn.Module:
    """Squared error for regression datasets, cross-entropy for classification."""
    return nn.MSELoss() if data.regression else nn.CrossEntropyLoss()


def build(spec, data: Dataset, seed: int) -> nn.Module:
    """Model `spec.name` for `data`, initialised identically in every process of a job."""
    torch.manual_seed(seed)
    return MODELS[spec.name](spec, data)
