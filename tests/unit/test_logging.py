"""The harness's own loggers are standard ones that reach logs/harness.log, whatever
imported Mininet first (its log module swaps the logger class for every logger made
after it, with a stderr handler that printed our warnings on the terminal)."""

from __future__ import annotations

import subprocess
import sys


def test_testbed_loggers_are_plain_and_reach_the_harness_log(tmp_path):
    code = f"""
import logging, pathlib
import mininet.log                    # first, as through topologies in the CLI
import testbed.cli, testbed.runner
from testbed import shell
from testbed.progress import log_to as _log_to
_log_to(pathlib.Path({str(tmp_path)!r}) / "h.log")
shell.run(["true", "marker-arg"])
logging.getLogger("testbed.ledger").warning("a warning")
assert type(logging.getLogger("testbed.shell")) is logging.Logger
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "h.log").read_text()
    assert "DEBUG testbed.shell: $ true marker-arg" in text
    assert "WARNING testbed.ledger: a warning" in text
    assert "a warning" not in proc.stderr  # nothing on the terminal
