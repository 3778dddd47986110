"""How a swept value reads as a column entry or a legend label."""

from __future__ import annotations

from typing import Any

import yaml


def label(value: Any) -> str:
    """A swept value as a column entry or legend label: scalars as written, mappings
    and lists in YAML flow style ({kind: blt, loss_bound: 0.1})."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)
