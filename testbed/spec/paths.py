"""Where relative paths in a spec point: the spec file's own directory.

A spec given as data (benchmarks, tests: source ``script``) has no file, and its
relative paths start from the current directory. A source label may carry context
after the file name, as studies and ``--set`` errors write it: ``spec.yaml (point 2)``.
"""

from __future__ import annotations

import re
from pathlib import Path


def spec_dir(source: str) -> Path:
    """The directory relative paths in the spec named `source` start from."""
    path = Path(re.sub(r" \(.*\)$", "", source))  # drop " (point 2)", " (--set k)"
    return path.resolve().parent if path.is_file() else Path.cwd()


def resolve(path: str, source: str) -> Path:
    """`path` from the spec `source`, made absolute."""
    return (spec_dir(source) / path).resolve()
