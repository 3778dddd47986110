"""Cross-field rules: checks that need the whole experiment (and its topology).

Each rule raises a `SpecError` naming the key path, so `testbed check` can point at
the exact line to fix.
"""

from __future__ import annotations

from testbed.errors import SpecError
from testbed.spec.schema import MODEL_DATASETS, Experiment, JobSpec

MAX_SUBTREE = 127  # testbed.training.tree.MAX_COUNT: the largest per-entry count


def check_rules(exp: Experiment, source: str) -> None:
    """Raise `SpecError` for the first rule `exp` breaks."""
    from topologies import build_topology  # deferred: pulls in Mininet's Topo

    topo = build_topology(exp.topology)
    hosts = topo.host_names()
    _check_directed(exp, source, topo)
    _check_band_buffers(exp, source, topo)
    _check_job_names(exp, source)
    for i, job in enumerate(exp.jobs):
        _check_job(job, f"jobs.{i}", source, hosts)
        if job.priority is not None and job.priority >= exp.controller.priority_classes:
            raise SpecError(
                source,
                f"jobs.{i}.priority",
                job.priority,
                f"expected a class below controller.priority_classes "
                f"({exp.controller.priority_classes})",
            )
    _check_capacity(exp, source, hosts)


def _check_directed(exp: Experiment, source: str, topo) -> None:
    links = {(d.src, d.dst) for d in topo.directions()}
    for i, d in enumerate(exp.topology.directed):
        if (d.src, d.dst) not in links:
            raise SpecError(
                source,
                f"topology.directed.{i}",
                f"{d.src}->{d.dst}",
                "expected src and dst joined by a link of the topology",
            )


def _check_band_buffers(exp: Experiment, source: str, topo) -> None:
    """Each band gets a share of a switch port's queue_pkts (testbed.network.tc), so
    there must be at least one packet per band."""
    bands = exp.switch_bands()
    if bands == 1:
        return
    for d in topo.directions():
        if d.src in topo.switch_info and d.params.queue_pkts < bands:
            raise SpecError(
                source,
                _queue_key(exp, topo, d),
                d.params.queue_pkts,
                f"expected >= {bands} packets: the port's buffer is split among "
                f"controller.priority_classes ({bands}) bands",
            )


def _queue_key(exp: Experiment, topo, d) -> str:
    """The key path that set direction `d`'s queue_pkts (most specific first)."""
    for i, o in reversed(list(enumerate(exp.topology.directed))):  # the last one wins
        if (o.src, o.dst) == (d.src, d.dst) and o.queue_pkts is not None:
            return f"topology.directed.{i}.queue_pkts"
    tier = d.link.tier
    override = exp.topology.tiers.get(tier)
    if override is not None and override.queue_pkts is not None:
        return f"topology.tiers.{tier}.queue_pkts"
    return "topology.link.queue_pkts"


def _check_job_names(exp: Experiment, source: str) -> None:
    seen: set[str] = set()
    for i, job in enumerate(exp.jobs):
        if job.name in seen:
            raise SpecError(source, f"jobs.{i}.name", job.name, "expected a name unique among jobs")
        seen.add(job.name)


def _check_job(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    if job.sync == "ps" and job.servers < 1:
        raise SpecError(source, f"{path}.servers", job.servers, "expected >= 1 for sync: ps")
    if job.sync == "allreduce" and job.servers:
        raise SpecError(source, f"{path}.servers", job.servers, "expected 0 for sync: allreduce")
    if job.sync == "allreduce" and job.workers < 2:
        raise SpecError(source, f"{path}.workers", job.workers, "expected >= 2 for sync: allreduce")
    if job.transport.kind == "gloo" and job.sync != "allreduce":
        raise SpecError(source, f"{path}.sync", job.sync, "expected allreduce for transport gloo")
    _check_aggregation(job, path, source)
    allowed = MODEL_DATASETS[job.model.name]
    if job.dataset not in allowed:
        raise SpecError(
            source,
            f"{path}.dataset",
            job.dataset,
            f"expected {' or '.join(allowed)} for model {job.model.name}",
        )
    if job.roles > len(hosts):
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected workers + servers <= {len(hosts)} hosts in the topology",
        )
    if isinstance(job.placement, tuple):
        _check_explicit_placement(job, path, source, hosts)


def _check_aggregation(job: JobSpec, path: str, source: str) -> None:
    if job.aggregation == "none":
        return
    if job.sync != "ps":
        raise SpecError(
            source,
            f"{path}.aggregation",
            job.aggregation_name,
            "expected none for sync: allreduce (aggregation trees carry parameter-server traffic)",
        )
    fanin = getattr(job.aggregation, "fanin", None)
    if fanin is not None and fanin < 2:
        raise SpecError(source, f"{path}.aggregation.fanin", fanin, "expected an integer >= 2")
    if job.workers > MAX_SUBTREE:
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected <= {MAX_SUBTREE} with aggregation (per-entry counts travel as one byte)",
        )


def _check_explicit_placement(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    known = set(hosts)
    for j, host in enumerate(job.placement):
        if host not in known:
            raise SpecError(
                source,
                f"{path}.placement.{j}",
                host,
                f"expected a host of the topology (h1..h{len(hosts)})",
            )
        if host in job.placement[:j]:
            raise SpecError(source, f"{path}.placement.{j}", host, "expected each host once")
    if len(job.placement) != job.roles:
        raise SpecError(
            source,
            f"{path}.placement",
            list(job.placement),
            f"expected {job.roles} hosts (servers first, then workers)",
        )


def _check_capacity(exp: Experiment, source: str, hosts: list[str]) -> None:
    explicit: dict[str, int] = {}
    for i, job in enumerate(exp.jobs):
        if isinstance(job.placement, tuple):
            for j, host in enumerate(job.placement):
                if host in explicit:
                    raise SpecError(
                        source,
                        f"jobs.{i}.placement.{j}",
                        host,
                        f"expected a host not already used by jobs.{explicit[host]}",
                    )
                explicit[host] = i
    total = sum(job.roles for job in exp.jobs)
    if total > len(hosts):
        raise SpecError(
            source,
            "jobs",
            f"{total} host roles",
            f"expected at most {len(hosts)} (one process per host; enlarge the topology)",
        )
