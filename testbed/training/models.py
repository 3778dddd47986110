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
    layers += [nn.MaxPool2d(2), nn.Flatten(),
               nn.Linear(channels * (height // 2) * (width // 2), data.classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn}


def build(spec, data: Dataset, seed: int) -> nn.Module:
    """Model `spec.name` for `data`, initialised identically in every process of a job."""
    torch.manual_seed(seed)
    return MODELS[spec.name](spec, data)
