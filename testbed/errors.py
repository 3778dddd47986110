"""The project's error types.

`SpecError` is the one error for bad input (a spec file, a ``--set`` override): it
renders as a single line naming the file, the key path, the bad value and what was
expected, which is all the CLI prints. `TestbedError` covers everything that goes
wrong at run time on a valid spec (missing privileges, a platform feature that is
absent, a process that died).
"""

from __future__ import annotations

from typing import Any


class TestbedError(Exception):
    """A run-time failure with a message meant for the user (no traceback needed)."""

    __test__ = False  # not a pytest test class despite the name


class SpecError(TestbedError):
    """Bad input in an experiment spec, reported as one line."""

    def __init__(self, source: str, path: str, value: Any, expected: str):
        self.source = source
        self.path = path
        self.value = value
        self.expected = expected
        super().__init__(self.render())

    def render(self) -> str:
        """``file: key.path = value: expected ...`` on one line."""
        where = f"{self.source}: {self.path}" if self.path else self.source
        value = "" if self.value is _NO_VALUE else f" = {_short(self.value)}"
        return _one_line(f"{where}{value}: {self.expected}")


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: Any = _NoValue()
NO_VALUE = _NO_VALUE  # for errors about a file or key as a whole


def _one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (a key a user
    wrote may hold any of them), so that the error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
