"""Which host runs which role of which job.

Each job gets `servers + workers` hosts, servers first. Explicit host lists are
honoured first; the other jobs then take free hosts in spec order:

- ``spread``: round-robin over racks, alternating pods first, so a job's traffic
  crosses as much of the fabric as possible (MLNET's multi-rack jobs);
- ``pack``: consecutive hosts (h1, h2, ...), filling racks one after another;
- ``rack-local``: as few racks as possible — the fullest-fitting single rack if one
  has room, else the racks with the most free hosts first (traffic stays under
  as few edge switches as it can).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.spec.schema import Experiment, JobSpec
from topologies import GraphTopo


@dataclass(frozen=True)
class Placement:
    """Hosts of one job's roles."""

    job: str
    servers: tuple[str, ...]
    workers: tuple[str, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.servers + self.workers


def place(exp: Experiment, topo: GraphTopo) -> dict[str, Placement]:
    """Placement of every job (the spec rules guarantee there are enough hosts)."""
    taken = {h for job in exp.jobs if isinstance(job.placement, tuple) for h in job.placement}
    result = {}
    for job in exp.jobs:
        if isinstance(job.placement, tuple):
            hosts = list(job.placement)
        else:
            if job.placement == "rack-local":
                order = rack_local_order(topo, taken, job.roles)
            else:
                order = spread_order(topo) if job.placement == "spread" else topo.host_names()
            hosts = [h for h in order if h not in taken][: job.roles]
            taken.update(hosts)
        result[job.name] = _split(job, hosts)
    return result


def spread_order(topo: GraphTopo) -> list[str]:
    """Hosts interleaved across racks, and across pods before racks of one pod."""
    racks = topo.racks()
    pod_of = {rack: topo.host_info[hosts[0]].pod for rack, hosts in racks.items()}
    position = {}
    for rack in sorted(racks):
        position[rack] = sum(1 for r in position if pod_of[r] == pod_of[rack])
    rack_order = sorted(racks, key=lambda r: (position[r], pod_of[r]))
    depth = max(len(hosts) for hosts in racks.values())
    return [racks[r][i] for i in range(depth) for r in rack_order if i < len(racks[r])]


def rack_local_order(topo: GraphTopo, taken: set[str], roles: int) -> list[str]:
    """Free hosts ordered so the first `roles` of them span as few racks as possible."""
    free = {rack: [h for h in hosts if h not in taken] for rack, hosts in topo.racks().items()}
    fitting = [r for r in sorted(free) if len(free[r]) >= roles]
    if fitting:  # best fit: the rack with the least room that still holds the job
        first = min(fitting, key=lambda r: len(free[r]))
        return free[first] + [h for r in sorted(free) if r != first for h in free[r]]
    by_room = sorted(free, key=lambda r: (-len(free[r]), r))
    return [h for r in by_room for h in free[r]]


def _split(job: JobSpec, hosts: list[str]) -> Placement:
    return Placement(job.name, tuple(hosts[: job.servers]), tuple(hosts[job.servers :]))
