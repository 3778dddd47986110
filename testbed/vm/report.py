"""What the guest found, in one line, and the kernel facts behind it."""

from __future__ import annotations

import platform
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Counts:
    """Test outcomes from a pytest junit.xml (errors count as failures)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0


def junit_counts(path: Path) -> Counts | None:
    """Outcome counts of `path`, or None if it is missing or unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return Counts(total - failed - skipped, failed, skipped)


def summary_line(counts: Counts | None, facts: dict, accel: str) -> str:
    """The last line `make vm-test` prints (its shape is a contract)."""
    c = counts or Counts()
    kernel = facts.get("kernel", "unknown")
    return (
        f"vm-test: {c.passed} passed, {c.failed} failed, {c.skipped} skipped; "
        f"{facts.get('distro', 'unknown')}; kernel {kernel}; "
        f"python {facts.get('python', 'unknown')}; netem {_yes(facts.get('netem'))}; "
        f"ovs-module {_yes(facts.get('ovs_module'))}; accel {accel}"
    )


def guest_facts() -> dict:
    """Inside the guest: the kernel and the features the stock-kernel tests need."""
    from testbed.platform import probe

    p = probe()
    return {
        "distro": os_release(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "netem": bool(p.netem),
        "netem_seed": bool(p.netem_seed),
        "ovs_module": p.ovs_kernel_module,
        "tcp_congestion_controls": list(p.tcp_congestion_controls),
        "versions": p.versions,
    }


def os_release(path: Path = Path("/etc/os-release")) -> str:
    """The release's name as it calls itself, e.g. 'Debian GNU/Linux 13 (trixie)'."""
    try:
        fields = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    except OSError:
        return "unknown"
    return fields.get("PRETTY_NAME", "unknown").strip().strip('"') or "unknown"


def _yes(value) -> str:
    return "yes" if value else "no"
