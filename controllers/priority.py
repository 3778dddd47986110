"""MLNET traffic management: which priority class each job's flows travel in.

A policy owns the classify table (table 0). At each job host's ingress edge switch
it installs one entry per (host, other host of the same job): match the host's
port and the IPv4 pair, set the DSCP of the job's class, continue to routing. The
switches' tc trees (built by the harness) map each class's DSCP to an HTB band
served in priority order; unmarked traffic lands in the lowest band.

Policies are plain objects returning OpenFlow messages; the app only sends them:

- `none`: no marking, one class for all.
- `fixed`: `jobs[].priority` from the spec (lowest class when unset), or with
  `controller.priority_order: random` a permutation of the jobs drawn from the run's
  seed, spread over the classes as smallest-first spreads its sizes.
- `smallest-first`: MLNET's example — jobs that will send fewer bytes in all (model
  bytes x model-sized messages per iteration x iterations) get higher priority;
  jobs that will send the same share a class.
- `las` (least attained service, beyond MLNET): every job starts in the highest
  class; the app polls the marking entries' byte counters and a job moves down a
  class each time its bytes sent cross the next threshold — short jobs finish
  first without anyone knowing job sizes in advance.

Each class change is reported as an event (job, class, reason) for controller.csv.

A policy's state (`state()`: each job's class, and for las the bytes each job has
attained) is what a restarted controller needs to go on where the killed one stopped:
the app keeps it in the run directory and hands it back (`resume`) to a new
controller of the same run. las then keeps each job's class and counts on from the
attained bytes; the new controller's cleared switches count from zero under them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from controllers.compat import ofp, parser
from controllers.contract import JobsDoc
from controllers.ofmsg import AFTER_CLASSIFY, CLASSIFY_TABLE, ETH_IPV4, flow
from controllers.topology import Fabric, Host

MARK_PRIORITY = 100
# Marking entries carry this tag plus the job index in their cookie, so flow stats
# can be asked for exactly them and summed per job.
COOKIE_TAG = 0x4D4C << 48  # "ML"
COOKIE_MASK = 0xFFFF << 48


def job_cookie(index: int) -> int:
    return COOKIE_TAG | index


@dataclass(frozen=True)
class Job:
    """What a policy knows about a job (from the harness's jobs JSON)."""

    index: int
    name: str
    hosts: tuple[Host, ...]
    priority: int | None  # spec value, used by `fixed`
    total_bytes: int  # model bytes the job will send in all, used by `smallest-first`


class MarkingPolicy:
    """Marks every job's flows with the DSCP of its current class (base of all policies)."""

    name = "base"
    polls = False  # whether the app must feed it flow statistics

    def __init__(self, fabric: Fabric, config: JobsDoc, resume: dict | None = None):
        self.resumed = resume or {}
        by_name = {h.name: h for h in fabric.hosts}
        self.jobs = [
            Job(i, j.name, tuple(by_name[h] for h in j.hosts), j.priority, j.total_bytes)
            for i, j in enumerate(config.jobs)
        ]
        self.config = config
        self.classes = config.classes
        self.dscp = list(config.dscp)
        self.events: list[tuple[str, int, str]] = []
        self.current: dict[str, int] = {}
        for job, (cls, reason) in self.initial_classes().items():
            self.current[job] = cls
            self.events.append((job, cls, reason))

    def initial_classes(self) -> dict[str, tuple[int, str]]:
        """Job name -> (class, why)."""
        raise NotImplementedError

    def state(self) -> dict:
        """What a restarted controller resumes from (see the module docstring)."""
        return {"classes": dict(self.current)}

    def messages(self, switch: str) -> list:
        """Table-0 entries of `switch`: marks for job hosts attached to it, then on to
        counting and routing."""
        msgs = [flow(CLASSIFY_TABLE, 0, parser.OFPMatch(), goto=AFTER_CLASSIFY)]
        for job in self.jobs:
            msgs += self._marks(switch, job, self.current[job.name], ofp.OFPFC_ADD)
        return msgs

    def _marks(self, switch: str, job: Job, cls: int, command: int) -> list:
        out = []
        for host in (h for h in job.hosts if h.switch == switch):
            for other in job.hosts:
                if other is host:
                    continue
                match = parser.OFPMatch(
                    in_port=host.port, eth_type=ETH_IPV4, ipv4_src=host.ip, ipv4_dst=other.ip
                )
                msg = flow(
                    CLASSIFY_TABLE,
                    MARK_PRIORITY,
                    match,
                    [parser.OFPActionSetField(ip_dscp=self.dscp[cls])],
                    goto=AFTER_CLASSIFY,
                    cookie=job_cookie(job.index),
                )
                msg.command = command
                out.append(msg)
        return out

    def reclassify(self, job: Job, cls: int, reason: str) -> list[tuple[str, object]]:
        """Move `job` to class `cls`: MODIFY_STRICT keeps the entries' byte counters."""
        self.current[job.name] = cls
        self.events.append((job.name, cls, reason))
        return [
            (sw, m)
            for sw in sorted({h.switch for h in job.hosts})
            for m in self._marks(sw, job, cls, ofp.OFPFC_MODIFY_STRICT)
        ]

    def stat_switches(self) -> list[str]:
        """Switches whose flow statistics the policy wants (polled by the app)."""
        return []

    def on_flow_stats(
        self, switch: str, counters: list[tuple[int, int]]
    ) -> list[tuple[str, object]]:
        """React to (cookie, byte_count) pairs from `switch`; return (switch, message)s."""
        return []

    def take_events(self) -> list[tuple[str, int, str]]:
        events, self.events = self.events, []
        return events


class NoPriority(MarkingPolicy):
    """`controller.priority: none`: every flow is best effort, nothing is marked."""

    name = "none"

    def initial_classes(self) -> dict[str, tuple[int, str]]:
        return {}

    def messages(self, switch: str) -> list:
        return [flow(CLASSIFY_TABLE, 0, parser.OFPMatch(), goto=AFTER_CLASSIFY)]


class FixedPriority(MarkingPolicy):
    """`fixed`: the class the spec gives each job, or a seeded random order's."""

    name = "fixed"

    def initial_classes(self) -> dict[str, tuple[int, str]]:
        if self.config.order == "random":
            return self._random_classes()
        lowest = self.classes - 1
        return {
            j.name: (j.priority, "fixed: jobs[].priority")
            if j.priority is not None
            else (lowest, "fixed: no jobs[].priority, lowest class")
            for j in self.jobs
        }

    def _random_classes(self) -> dict[str, tuple[int, str]]:
        """MLNET's random priorities: job i gets rank order[i] of n, drawn from the seed."""
        n, seed = len(self.jobs), self.config.seed
        order = random.Random(seed).sample(range(n), n)
        return {
            j.name: (
                _bucket(order[j.index], n, self.classes),
                f"fixed: random order (seed {seed}), rank {order[j.index] + 1} of {n}",
            )
            for j in self.jobs
        }


class SmallestFirst(MarkingPolicy):
    """`smallest-first`: the fewer bytes a job will send in all, the higher its class.

    Ties: jobs that will send the same number of bytes share a class (spec order
    decides nothing). Distinct sizes are ranked smallest first; with more sizes than
    classes, the ranks are cut into `classes` equal runs."""

    name = "smallest-first"

    def initial_classes(self) -> dict[str, tuple[int, str]]:
        sizes = sorted({j.total_bytes for j in self.jobs})
        n = len(sizes)
        rank = {size: i for i, size in enumerate(sizes)}
        return {
            j.name: (
                _bucket(rank[j.total_bytes], n, self.classes),
                f"smallest-first: {j.total_bytes} B in all, size {rank[j.total_bytes] + 1} of {n}",
            )
            for j in self.jobs
        }


def _bucket(rank: int, ranks: int, classes: int) -> int:
    """Class of the `rank`-th smallest of `ranks` sizes, over `classes` classes."""
    return rank * classes // ranks if ranks > classes else rank


class LeastAttainedService(MarkingPolicy):
    """`las`: start high, move down a class at each byte threshold crossed."""

    name = "las"
    polls = True

    def __init__(self, fabric: Fabric, config: JobsDoc, resume: dict | None = None):
        self.thresholds = list(config.thresholds_bytes)
        self.sent: dict[tuple[str, int], int] = {}  # (switch, job index) -> bytes
        # bytes a killed controller had counted, before this one's switches counted anew
        self.carried: dict[str, int] = dict((resume or {}).get("attained", {}))
        super().__init__(fabric, config, resume)

    def initial_classes(self) -> dict[str, tuple[int, str]]:
        resumed = self.resumed.get("classes", {})
        return {
            j.name: (
                (resumed[j.name], f"las: resumed after a controller restart, "
                                  f"{self.carried.get(j.name, 0)} B sent")
                if j.name in resumed
                else (0, "las: start in the highest class")
            )
            for j in self.jobs
        }  # fmt: skip

    def state(self) -> dict:
        return {**super().state(), "attained": {j.name: self.attained(j) for j in self.jobs}}

    def stat_switches(self) -> list[str]:
        """Switches whose marking entries count the jobs' bytes."""
        return sorted({h.switch for j in self.jobs for h in j.hosts})

    def attained(self, job: Job) -> int:
        counted = sum(b for (_, index), b in self.sent.items() if index == job.index)
        return self.carried.get(job.name, 0) + counted

    def on_flow_stats(
        self, switch: str, counters: list[tuple[int, int]]
    ) -> list[tuple[str, object]]:
        totals: dict[int, int] = {}
        for cookie, nbytes in counters:
            if cookie & COOKIE_MASK == COOKIE_TAG:
                totals[cookie & ~COOKIE_MASK] = totals.get(cookie & ~COOKIE_MASK, 0) + nbytes
        for index, nbytes in totals.items():
            self.sent[(switch, index)] = nbytes
        msgs = []
        for job in self.jobs:
            attained = self.attained(job)
            target = sum(1 for t in self.thresholds if attained >= t)
            if target > self.current[job.name]:
                reason = f"las: {attained} B sent >= {self.thresholds[target - 1]} B"
                msgs += self.reclassify(job, min(target, self.classes - 1), reason)
        return msgs


POLICIES = {p.name: p for p in (NoPriority, FixedPriority, SmallestFirst, LeastAttainedService)}


def make_priority(
    fabric: Fabric, config: JobsDoc | dict, resume: dict | None = None
) -> MarkingPolicy:
    """The policy `config.policy` (spec `controller.priority`) for `fabric`, going on
    from `resume` (a killed controller's `state()`) when given."""
    config = JobsDoc.from_json(config)
    if config.policy not in POLICIES:
        raise ValueError(
            f"unknown priority policy {config.policy!r}; expected one of {sorted(POLICIES)}"
        )
    return POLICIES[config.policy](fabric, config, resume)
