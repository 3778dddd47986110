"""``python -m testbed.training ROLE.json``: one worker or server process of a job."""

from __future__ import annotations

import sys

from testbed.training.loop import run
from testbed.training.role import RoleConfig


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m testbed.training ROLE.json", file=sys.stderr)
        return 2
    run(RoleConfig.load(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
