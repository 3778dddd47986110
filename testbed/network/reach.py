"""All-pairs reachability through the programmed fabric, checked before jobs start."""

from __future__ import annotations

from subprocess import PIPE

from testbed.network.emulated import EmulatedNetwork

# fping runs from this many hosts at a time: all 128 hosts of a k=8 fat-tree probing
# at once overload a userspace datapath on two cores and read as false losses.
CONCURRENT_SOURCES = 16


def unreachable_pairs(net: EmulatedNetwork) -> list[tuple[str, str]]:
    """(src, dst) host pairs that did not answer a ping, even after retries.

    Each source host pings every other host with one fping process (N processes,
    not N^2), a batch of sources at a time; fping retries silent targets itself.
    """
    infos = net.topo.host_info
    by_ip = {info.ip: name for name, info in infos.items()}
    names = net.topo.host_names()
    failures: list[tuple[str, str]] = []
    for start in range(0, len(names), CONCURRENT_SOURCES):
        procs = {}
        for name in names[start : start + CONCURRENT_SOURCES]:
            targets = [info.ip for other, info in infos.items() if other != name]
            # -u: print unreachable targets; -r 3 retries, first timeout 500 ms, backing off.
            procs[name] = net.host(name).popen(
                ["fping", "-u", "-r", "3", "-t", "500", "-i", "5", *targets],
                stdout=PIPE,
                stderr=PIPE,
                text=True,
            )
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=120)
            failures += [(name, by_ip[ip]) for ip in out.split() if ip in by_ip]
    return failures
