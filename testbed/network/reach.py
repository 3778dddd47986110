"""All-pairs reachability through the programmed fabric, checked before jobs start."""

from __future__ import annotations

import re
from subprocess import PIPE

from testbed.network.emulated import EmulatedNetwork

# fping -q -c N prints one summary line per target on stderr:
#   10.0.1.2 : xmt/rcv/%loss = 2/2/0%, min/avg/max = ...
SUMMARY = re.compile(r"^(\S+)\s*:\s*xmt/rcv/%loss = (\d+)/(\d+)/")


def unreachable_pairs(net: EmulatedNetwork, count: int = 2) -> list[tuple[str, str]]:
    """(src, dst) host pairs where none of `count` pings got an answer.

    Every host pings all others at once with one fping process, all hosts in
    parallel: N processes instead of N^2.
    """
    infos = net.topo.host_info
    by_ip = {info.ip: name for name, info in infos.items()}
    procs = {}
    for name in net.topo.host_names():
        targets = [info.ip for other, info in infos.items() if other != name]
        procs[name] = net.host(name).popen(
            ["fping", "-q", "-c", str(count), "-p", "100", "-t", "500", *targets],
            stdout=PIPE, stderr=PIPE, text=True,
        )
    failures = []
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        answered = {m.group(1): int(m.group(3)) for m in map(SUMMARY.match, err.splitlines()) if m}
        failures += [(name, by_ip[ip]) for ip in by_ip if ip != infos[name].ip
                     and answered.get(ip, 0) == 0]
    return failures
