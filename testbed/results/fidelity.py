"""Was the emulator itself the bottleneck? cpu.csv and metadata.json's `fidelity`.

On a shared 2-core machine a saturated CPU stretches every iteration and quietly
turns a network experiment into a CPU experiment. `CpuSampler` records, every
`results.sample_s` while the run lasts, how busy the whole machine was and what the
run's own parts used (the harness, ovs-vswitchd, the controller, the forkserver and
each job's process groups). `assess` condenses cpu.csv, links.csv and the loss
report into `fidelity`, with ``trustworthy: false`` and the reasons when:

- the machine was more than 90% busy for more than 10% of the sampled time;
- a direction's measured loss lies outside its binomial interval at a *family-wise*
  99% level (Bonferroni over the m lossy directions that carried traffic: each is
  held to 1 - 1%/m, so a correct emulator raises this flag in at most 1% of runs,
  whatever the size of the network);
- a direction held packets back that its shaper would have sent: at least 3 of the
  samples that found its tree holding packets, and at least 10% of them, found the
  link class's token bucket not in debt (links.csv `held_back`). A link whose queue
  holds packets while it runs at its rate is always in debt (its shaper is what
  holds them); packets waiting while the bucket has tokens wait for something else
  (a late dequeue on a busy CPU, a device that stopped taking packets), so a link
  held back in a share h of its backlogged samples ran at about (1 - h) of its rate
  while backlogged. When ovs-vswitchd was at 90% of a core or more (p95) meanwhile,
  the reason names the switch as the cause, and what to change. An earlier check
  compared bytes sent over the 1 s intervals whose both ends found packets queued,
  which a bursty link that emptied in between fooled (the quickstart's server uplink
  at 10 Mb/s, 0.66 of its rate, in one run of two);
- a replica's parameter snapshot is missing where the replicas were to be compared
  (`param_divergence` then stays empty rather than compare fewer replicas);
- a job with a set compute time (`jobs[].compute_ms`) computed for longer than that in
  more than 10% of its iterations (by more than a tenth, and 2 ms): the CPU, not the
  setting, then set its compute:communication ratio.

What the slow-link check cannot see: a tree read between bursts (a sample finds it
empty), links on a cluster (their classes are not read), and a CPU so late that even
the samples are: they are taken by the same busy machine.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.layout import RunPaths
from testbed.results.tables import snapshot_gaps
from testbed.sampling import Periodic
from testbed.stats import binomial_interval

CPU_COLUMNS = ["time_s", "source", "cpu_pct"]
MACHINE = "machine"  # cpu_pct: busy share of all cores; other sources: their share of all cores
BUSY_PCT = 90.0
# ovs-vswitchd's share of one core from which its forwarding thread counts as the
# cause of links running below their rate (it forwards in one thread).
SWITCH_BUSY_PCT = 90.0
SATURATED_SHARE = 0.10
FAMILY_LEVEL = 0.99
HELD_SHARE = 0.1  # of a direction's backlogged samples: ~ running below 90% of its rate
MIN_HELD_SAMPLES = 3
OVS_PIDFILE = Path("/run/openvswitch/ovs-vswitchd.pid")
TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1

Groups = Callable[[], dict[str, Iterable[int]]]  # source name -> process group ids


class CpuSampler:
    """Samples /proc in a thread and appends rows to cpu.csv."""

    def __init__(self, path: Path, interval_s: float, t0: float, groups: Groups):
        self.t0, self.groups = t0, groups
        self._fh = open(path, "w", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=CPU_COLUMNS)
        self._csv.writeheader()
        self._periodic = Periodic("cpu-sampler", interval_s, self._sample)
        self._machine = _machine_ticks()
        self._ticks: dict[int, int] = {}  # pid -> utime + stime at the last sample
        self._last = time.monotonic()

    def start(self) -> None:
        self._group_ticks()  # the baseline of every pid already running: no row
        self._machine, self._last = _machine_ticks(), time.monotonic()
        self._periodic.start()

    def stop(self) -> None:
        """One last sample, then close cpu.csv. Idempotent."""
        self._periodic.stop()
        if not self._fh.closed:
            self._fh.close()

    def _sample(self) -> None:
        now, busy_total = time.monotonic(), _machine_ticks()
        dt, self._last = now - self._last, now
        (busy, total), (b0, t0) = busy_total, self._machine
        self._machine = busy_total
        if dt <= 0 or total <= t0:
            return
        stamp = round(time.time() - self.t0, 3)
        rows = [
            {
                "time_s": stamp,
                "source": MACHINE,
                "cpu_pct": round(100 * (busy - b0) / (total - t0), 2),
            }
        ]
        capacity = dt * TICKS * CORES
        for source, used in self._group_ticks().items():
            rows.append(
                {"time_s": stamp, "source": source, "cpu_pct": round(100 * used / capacity, 2)}
            )
        if not self._fh.closed:
            self._csv.writerows(rows)
            self._fh.flush()

    def _group_ticks(self) -> dict[str, int]:
        """CPU ticks each source used since the last sample (new pids: all of theirs)."""
        wanted = {"harness": {os.getpgrp()}, "ovs-vswitchd": _ovs_pgid()}
        for name, pgids in self.groups().items():
            wanted[name] = set(pgids)
        owner = {pgid: name for name, pgids in wanted.items() for pgid in pgids}
        used = dict.fromkeys(wanted, 0)
        seen: dict[int, int] = {}
        for pid, pgid, ticks in _processes():
            if pgid in owner:
                used[owner[pgid]] += ticks - self._ticks.get(pid, 0)
                seen[pid] = ticks
        self._ticks = seen
        return used


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def _processes():
    """(pid, process group, utime + stime) of every process, skipping ones that vanish."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces
        yield int(entry.name), int(rest[2]), int(rest[11]) + int(rest[12])


def _ovs_pgid() -> set[int]:
    try:
        pid = int(OVS_PIDFILE.read_text().strip())
        return {os.getpgid(pid)}
    except (OSError, ValueError):
        return set()


# ------------------------------------------------------------------ assessment


def assess(
    run_dir: Path,
    links: list[dict],
    divergence: pd.DataFrame | None = None,
) -> dict:
    """The `fidelity` section of metadata.json from cpu.csv, links.csv, the loss
    report (metadata.json's `links`) and the replica comparisons (`divergence`, from
    `testbed.results.tables.param_divergence`)."""
    fidelity: dict = {"trustworthy": True, "reasons": []}
    gaps = snapshot_gaps(divergence) if divergence is not None else []
    if gaps:
        fidelity["snapshot_gaps"] = gaps
        fidelity["reasons"].append(
            f"param_divergence left empty, a replica's snapshot missing: {', '.join(gaps)}"
        )
    cpu_path, links_path = RunPaths(run_dir).table("cpu"), RunPaths(run_dir).table("links")
    if cpu_path.exists():
        fidelity.update(cpu_figures(pd.read_csv(cpu_path)))
        if fidelity.get("cpu_saturated_share", 0) > SATURATED_SHARE:
            fidelity["reasons"].append(
                f"CPU above {BUSY_PCT:g}% busy for {fidelity['cpu_busy_above_90_s']} s "
                f"({100 * fidelity['cpu_saturated_share']:.0f}% of the run)"
            )
    outliers = loss_outliers(links)
    fidelity["loss_outside_familywise_ci99"] = outliers
    if outliers:
        fidelity["reasons"].append(
            f"measured loss outside its family-wise 99% interval on {', '.join(outliers)}"
        )
    overruns = compute_overruns(RunPaths(run_dir).table("iterations"))
    if overruns:
        fidelity["compute_overruns"] = overruns
        listed = ", ".join(
            f"{job} ({100 * share:.0f}% of iterations)" for job, share in overruns.items()
        )
        fidelity["reasons"].append(f"compute took longer than jobs[].compute_ms: {listed}")
    if links_path.exists():
        slow = slow_links(pd.read_csv(links_path))
        fidelity["slow_links"] = slow
        if slow:
            fidelity["reasons"].append(_slow_reason(slow, fidelity, _ports(run_dir)))
    fidelity["trustworthy"] = not fidelity["reasons"]
    return fidelity


def _slow_reason(slow: dict, fidelity: dict, ports: str) -> str:
    """Why links ran slow: the switch, when its forwarding thread was saturated (then
    say what to change), else packets held back for a reason the run cannot name."""
    names = ", ".join(
        f"{d} ({v['held_samples']} of {v['backlogged_samples']} backlogged samples)"
        for d, v in slow.items()
    )
    busy = fidelity.get("ovs_core_busy_p95_pct", 0)
    fidelity["switch_saturated"] = busy >= SWITCH_BUSY_PCT
    if not fidelity["switch_saturated"]:
        return f"links held packets back that their shaper would have sent: {names}"
    change = "lower the link rates" + (" or set network.ports: afxdp" if ports == "packet" else "")
    return (
        f"the switch was the bottleneck: ovs-vswitchd at {busy:g}% of a core (p95, "
        f"{ports} ports) while links held back packets their shaper would have sent: "
        f"{names}; {change}"
    )


def _ports(run_dir: Path) -> str:
    """The run's forwarding plane, from its metadata.json ('' if unknown)."""
    try:
        return json.loads(RunPaths(run_dir).metadata.read_text())["platform"]["ports"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def cpu_figures(cpu: pd.DataFrame) -> dict:
    """Machine busy p50/p95 (%), seconds above 90% busy, and their share of the run;
    ovs-vswitchd's p50/p95 in % of *one core* (the userspace datapath forwards in one
    thread, so it saturates at 100% of a core while the machine still has room)."""
    machine = cpu[cpu["source"] == MACHINE].sort_values("time_s")
    if machine.empty:
        return {}
    dt = machine["time_s"].diff().fillna(0).to_numpy()
    busy = machine["cpu_pct"].to_numpy()
    above = float(dt[busy > BUSY_PCT].sum())
    span = float(dt.sum()) or 1.0
    figures = {
        "cpu_busy_p50_pct": round(float(np.percentile(busy, 50)), 1),
        "cpu_busy_p95_pct": round(float(np.percentile(busy, 95)), 1),
        "cpu_busy_above_90_s": round(above, 1),
        "cpu_saturated_share": round(above / span, 3),
    }
    ovs = cpu[cpu["source"] == "ovs-vswitchd"]["cpu_pct"].to_numpy() * CORES
    if len(ovs):
        figures["ovs_core_busy_p50_pct"] = round(float(np.percentile(ovs, 50)), 1)
        figures["ovs_core_busy_p95_pct"] = round(float(np.percentile(ovs, 95)), 1)
    return figures


def loss_outliers(links: list[dict], level: float = FAMILY_LEVEL) -> list[str]:
    """Directions whose loss lies outside the Bonferroni interval of the family of
    lossy directions that carried traffic (family-wise `level`), and lossless ones
    that lost anything (impossible when correct, so they cost the family nothing)."""
    carried = [e for e in links if e["offered_packets"]]
    family = [e for e in carried if e["configured_loss_pct"]]
    each = 1 - (1 - level) / max(1, len(family))
    out = []
    for e in carried:
        lo, hi = binomial_interval(each, e["offered_packets"], e["configured_loss_pct"] / 100)
        if not lo <= e["loss_drops"] <= hi:
            out.append(e["direction"])
    return out


OVERRUN_SHARE = 0.1


def compute_overruns(path: Path) -> dict[str, float]:
    """Job -> share of its iterations whose compute phase overran its set time, for the
    jobs where that share exceeds OVERRUN_SHARE (module docstring)."""
    try:
        its = pd.read_csv(path, usecols=["job", "compute_s", "compute_set_s"])
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return {}
    its = its.dropna(subset=["compute_set_s"])
    over = its["compute_s"] > 1.1 * its["compute_set_s"] + 0.002
    shares = over.groupby(its["job"]).mean()
    return {job: round(float(v), 3) for job, v in shares.items() if v > OVERRUN_SHARE}


def slow_links(links: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Direction -> {held_samples, backlogged_samples} for the directions that held
    packets back in at least MIN_HELD_SAMPLES samples and HELD_SHARE of the samples
    that found them backlogged (module docstring)."""
    if "held_back" not in links:
        return {}
    slow = {}
    for direction, held in links.dropna(subset=["held_back"]).groupby("direction")["held_back"]:
        n_held, backlogged = int((held == 1).sum()), len(held)
        if n_held >= MIN_HELD_SAMPLES and n_held >= HELD_SHARE * backlogged:
            slow[direction] = {"held_samples": n_held, "backlogged_samples": backlogged}
    return slow
