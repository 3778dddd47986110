"""Run external commands as argument lists (never through a shell), logging each.

`run` executes one command, optionally inside a Mininet host's network namespace
(via ``mnexec -a PID``); `run_batch` feeds many commands of one tool (tc, ip) to its
``-batch`` mode, which parses lines itself — still no shell — and saves thousands of
process start-ups when a fat-tree has hundreds of ports.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from testbed.errors import TestbedError

log = logging.getLogger("testbed.shell")


def in_namespace(pid: int | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed so that it runs in the network namespace of process `pid`."""
    return ["mnexec", "-a", str(pid), *argv] if pid else list(argv)


def run(
    argv: Sequence[str],
    ns_pid: int | None = None,
    check: bool = True,
    input_text: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run `argv` (in the namespace of `ns_pid` if given); raise TestbedError if it fails."""
    full = in_namespace(ns_pid, [str(a) for a in argv])
    log.debug("$ %s", " ".join(full))
    try:
        proc = subprocess.run(
            full, capture_output=True, text=True, input=input_text, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise TestbedError(f"command not found: {full[0]} (run `sudo make bootstrap`)") from None
    except subprocess.TimeoutExpired:
        raise TestbedError(f"command timed out after {timeout:.0f} s: {_shown(full)}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise TestbedError(f"`{_shown(full)}` failed: {detail[-1] if detail else proc.returncode}")
    return proc


def _shown(argv: Sequence[str], limit: int = 200) -> str:
    """A command line for an error message, cut short: one ovs-vsctl transaction over
    a k=16 fat-tree's bridges is ~70,000 characters (the full line is in the log)."""
    line = " ".join(argv)
    return line if len(line) <= limit else f"{line[:limit]}... ({len(argv)} arguments)"


def run_batch(
    tool: str, commands: Sequence[Sequence[str]], ns_pid: int | None = None, check: bool = True
) -> None:
    """Run many `tool` sub-commands in one ``tool -force -batch -`` process.

    Each command is an argument list without the tool name, e.g.
    ``["qdisc", "add", "dev", "e1-eth1", ...]``; arguments must not contain blanks.
    With `check`, any failing line fails the whole call (after all lines ran).
    """
    if not commands:
        return
    lines = []
    for argv in commands:
        args = [str(a) for a in argv]
        if any(not a or any(c.isspace() for c in a) for a in args):
            raise ValueError(f"{tool} batch argument with whitespace: {args}")
        lines.append(" ".join(args))
        log.debug("$ %s %s", tool, lines[-1])
    run(
        [tool, "-force", "-batch", "-"],
        ns_pid=ns_pid,
        input_text="\n".join(lines) + "\n",
        check=check,
    )


def have(tool: str) -> bool:
    """Whether `tool` is on PATH."""
    return shutil.which(tool) is not None


SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=5")


def ssh_argv(server: str, argv: list[str], *options: str) -> list[str]:
    """`argv` run on `server` over ssh. ssh joins the remote words into one shell line,
    so each is quoted; `server` is a validated name (it cannot start with a dash)."""
    return ["ssh", *SSH_OPTIONS, *options, server, "--", shlex.join(argv)]
