"""The spec's scalar types and the base of every section: strict scalars, frozen
models that reject unknown keys."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
)

# Scalars are strict (no "4" -> 4 coercion); containers stay lax so YAML lists can
# become tuples, which keeps the frozen objects hashable and immutable.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=40)]


class Frozen(BaseModel):
    """Base for every spec section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
