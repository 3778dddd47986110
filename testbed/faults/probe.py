"""Recovery probes: fping from each source host to its exposed destinations, one probe
per pair every PERIOD_MS, from just before a fault until a while after it.

A pair's recovery is the time from the fault until the first reply after its first
run of lost probes; a pair that lost no probe was not disrupted (its recovery is 0 to
within one period). The raw fping output stays in the run directory.
"""

from __future__ import annotations

import re
import signal
import statistics
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, Popen

# fping's loop mode waits one period for each reply, so a reply slower than the period
# reads as lost. At 10 ms, replies through userspace OVS under the fault tests' load
# (probes and a job at 10 Mb/s) often took longer: 40-97% of the probes before a fault
# "lost", and in one CI run every pair was left out as congested. At 20 ms (half the
# probe load, twice the wait) every pair was measured in the same tests.
PERIOD_MS = 20
LEAD_S = 1.0  # probing starts this long before the fault: the pairs' path before it
WINDOW_S = 5.0  # and goes on this long after it; longer outages read "not recovered"
# A run of lost probes that starts this long after the fault is not the fault's; a
# pair silent this long at the end has not recovered.
ONSET_S = 0.5
# A pair that lost more than this share of its probes before the fault (a queue the
# jobs keep full) cannot show what the fault did: it is left out, and counted.
CONGESTED = 0.5
REPLY = re.compile(r"^\[(\d+\.\d+)\] (\S+) : \[(\d+)\], \d+ bytes", re.M)


@dataclass
class PairRecovery:
    src: str
    dst: str
    lost: int  # probes lost in the outage
    recovery_s: float | None  # None: no reply after the outage


def start(host, targets: list[str], out: Path, tos: int | None = None) -> Popen:
    """Probe `targets` (IPs) from the Mininet `host`, replies timestamped into `out`;
    `tos`: mark the probes (the switches' top priority band, where there are bands)."""
    argv = ["fping", "-l", "-D", "-p", str(PERIOD_MS), "-i", "1"]
    argv += ["-O", str(tos)] if tos is not None else []
    argv += targets
    with open(out, "w") as fh:
        return host.popen(argv, stdout=fh, stderr=DEVNULL)


def stop(proc: Popen) -> None:
    """SIGINT: fping flushes its output and exits."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    except Exception:
        proc.kill()
        proc.wait()


def replies(text: str) -> dict[str, list[tuple[int, float]]]:
    """IP -> [(sequence number, receive time)] in sequence order."""
    by_ip: dict[str, list[tuple[int, float]]] = {}
    for stamp, ip, seq in REPLY.findall(text):
        by_ip.setdefault(ip, []).append((int(seq), float(stamp)))
    return {ip: sorted(r) for ip, r in by_ip.items()}


def recovery(
    got: list[tuple[int, float]], fault_at: float, ended_at: float
) -> tuple[int, float | None]:
    """(probes lost, seconds from `fault_at` to the first reply after them) for one
    pair whose probes ran until `ended_at`; (0, 0.0) when it lost none around the
    fault, (lost, None) when no reply came after the outage.

    The outage is the first run of lost probes that ends after the fault and starts
    within ONSET_S of it (a random link loss in that second would be counted too)."""
    prev_seq, prev_t = -1, None  # a virtual reply just before the first probe
    for seq, t in got:
        if prev_t is not None and prev_t > fault_at + ONSET_S:
            return 0, 0.0
        if seq > prev_seq + 1 and t > fault_at:
            return seq - prev_seq - 1, round(t - fault_at, 4)
        prev_seq, prev_t = seq, t
    silent = ended_at - (prev_t if prev_t is not None else fault_at - LEAD_S)
    if silent > ONSET_S:
        return max(1, round(silent * 1000 / PERIOD_MS)), None
    return 0, 0.0


def baseline_loss(got: list[tuple[int, float]], fault_at: float) -> float:
    """Share of the probes sent before the fault that got no reply (sequence numbers
    up to the last reply before it; 1.0 when none came back)."""
    before = [seq for seq, t in got if t <= fault_at]
    if not before:
        return 1.0
    return 1 - len(before) / (max(before) + 1)


def summarize(pairs: list[PairRecovery], congested: int = 0) -> dict:
    """faults.csv's probe columns: pairs probed and disrupted, recovery p50 and max;
    `congested` pairs were probed but left out (CONGESTED)."""
    hit = [p for p in pairs if p.lost]
    times = [p.recovery_s for p in hit if p.recovery_s is not None]
    unrecovered = len(hit) - len(times)
    worst = max(hit, key=lambda p: 1e9 if p.recovery_s is None else p.recovery_s, default=None)
    return {
        "probed_pairs": len(pairs),
        "congested_pairs": congested,
        "disrupted_pairs": len(hit),
        "unrecovered_pairs": unrecovered,
        # every pair through again: the slowest pair's recovery (0: nobody lost a probe;
        # None: some never did, or no pair could be measured)
        "recovery_s": None if unrecovered or not pairs else max(times, default=0.0),
        "recovery_p50_s": round(statistics.median(times), 4) if times else None,
        "worst_pair": f"{worst.src}->{worst.dst}" if worst else "",
    }
