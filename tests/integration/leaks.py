"""What a run could leave behind on the machine, for before/after comparisons."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from testbed.ledger import STATE_DIR

OUR_PROCESS = re.compile(rb"testbed\.training|-m\x00controllers|mininet:h\d+")


def snapshot() -> dict[str, set]:
    """Bridges, kernel datapaths, root-namespace interfaces and qdiscs, our processes,
    ledgers, nft tables, and Open vSwitch's global other_config (an AF_XDP run sets
    pmd-maxsleep where nobody had and must remove it)."""
    bridges = subprocess.run(
        ["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True, text=True
    ).stdout.split()
    # Kernel datapaths (e.g. system@ovs-system); none where the module is absent.
    datapaths = subprocess.run(["ovs-dpctl", "dump-dps"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True).stdout
    options = subprocess.run(
        ["ovs-vsctl", "--timeout=10", "get", "Open_vSwitch", ".", "other_config"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "bridges": set(bridges),
        "datapaths": set(datapaths.split()),
        "interfaces": set(os.listdir("/sys/class/net")),
        "processes": _our_processes(),
        "ledgers": {p.name for p in STATE_DIR.glob("*.json")},
        "nft_tables": set(tables.splitlines()),
        "qdiscs": set(qdiscs.splitlines()),
        "ovs_options": set(options.strip("{}").split(", ")) - {""},
    }


def _our_processes() -> set[str]:
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if OUR_PROCESS.search(cmdline) and int(proc.name) != os.getpid():
            text = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.add(f"{proc.name}: {text[:80]}")
    return found


def new_leftovers(before: dict[str, set], after: dict[str, set]) -> dict[str, set]:
    """Everything present after that was not there before."""
    return {key: after[key] - before[key] for key in after if after[key] - before[key]}
