"""Read the per-job tier counters the controller installs (`controllers.accounting`)
from the switches, once the jobs are over.

Open vSwitch updates an OpenFlow entry's counters from its datapath flows when a
revalidator passes; ``ovs-appctl revalidator/wait`` waits for one full pass, so the
counts read afterwards include every packet already forwarded. Nothing is changed
(`revalidator/purge` would flush every datapath flow of the machine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from controllers.cookies import ACCOUNT_MASK, ACCOUNT_TAG, parse_account_cookie
from testbed.network.protocol import Network

DUMPS_AT_ONCE = 8
_ENTRY = re.compile(r"cookie=(0x[0-9a-f]+).*?n_bytes=(\d+)")


def parse_dump(text: str) -> dict[tuple[str, int], int]:
    """(tier, job index) -> bytes from one ``ovs-ofctl dump-flows`` output."""
    totals: dict[tuple[str, int], int] = {}
    for cookie, nbytes in _ENTRY.findall(text):
        key = parse_account_cookie(int(cookie, 16))
        if key is not None:
            totals[key] = totals.get(key, 0) + int(nbytes)
    return totals


def job_tier_bytes(
    switches: Iterable[str], jobs: list[str], tiers: list[str], network: Network
) -> dict[str, dict[str, int]]:
    """Bytes each job (names by index) put on each of `tiers`, summed over `switches`
    (each read on the server that holds it)."""
    on_switch = network.on_switch
    for switch in network.one_switch_per_server():
        on_switch(switch, ["ovs-appctl", "revalidator/wait"])
    cookie = f"cookie={ACCOUNT_TAG:#x}/{ACCOUNT_MASK:#x}"

    def dump(switch: str) -> str:
        return on_switch(switch, ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch, cookie])

    # Several at a time: one after another, the 320 switches of a k=16 fat-tree took 3 min.
    with ThreadPoolExecutor(max_workers=DUMPS_AT_ONCE) as pool:
        dumps = list(pool.map(dump, sorted(switches)))
    totals: dict[tuple[str, int], int] = {}
    for text in dumps:
        for key, nbytes in parse_dump(text).items():
            totals[key] = totals.get(key, 0) + nbytes
    out = {name: dict.fromkeys(tiers, 0) for name in jobs}
    for (tier, index), nbytes in sorted(totals.items()):
        out[jobs[index]][tier] = nbytes
    return out
