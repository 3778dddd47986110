"""Cross-field rules: checks that need the whole experiment (and its topology).

Each rule raises a `SpecError` naming the key path, so `testbed check` can point at
the exact line to fix.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from testbed.cdf import CdfError, cdf_path, load_cdf
from testbed.errors import SpecError
from testbed.spec.paths import resolve
from testbed.spec.placement import place
from testbed.spec.schema import (
    BUILTIN_ONLY,
    MAX_TREE_COUNT,
    MODEL_DATASETS,
    Experiment,
    JobSpec,
)
from topologies import build_topology


def check_rules(exp: Experiment, source: str) -> None:
    """Raise `SpecError` for the first rule `exp` breaks."""
    topo = build_topology(exp.topology)
    hosts = topo.host_names()
    _check_directed(exp, source, topo)
    _check_band_buffers(exp, source, topo)
    _check_job_names(exp, source)
    for i, job in enumerate(exp.jobs):
        if job.is_command:
            _check_command_job(exp, job, f"jobs.{i}", source)
        elif job.env or job.workdir is not None:
            key = "env" if job.env else "workdir"
            raise SpecError(
                source, f"jobs.{i}.{key}", getattr(job, key), "expected only with command"
            )
        else:
            _check_job(job, f"jobs.{i}", source, hosts)
        _check_hosts_fit(job, f"jobs.{i}", source, hosts)
        _check_class(exp, job.priority, f"jobs.{i}.priority", source)
        _check_on_failure(job, f"jobs.{i}", source)
    _check_capacity(exp, source, hosts)
    _check_traffic(exp, source, topo)
    _check_faults(exp, source, topo)
    _check_cluster(exp, source, topo)


def _check_class(exp: Experiment, priority: int | None, path: str, source: str) -> None:
    """A priority class (of a job or a traffic entry) must be one the switches have."""
    if priority is not None and priority >= exp.controller.priority_classes:
        raise SpecError(
            source,
            path,
            priority,
            f"expected a class below controller.priority_classes "
            f"({exp.controller.priority_classes})",
        )


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
    _check_drop_at(job, path, source)
    allowed = MODEL_DATASETS[job.model.name]
    if job.dataset not in allowed:
        raise SpecError(
            source,
            f"{path}.dataset",
            job.dataset,
            f"expected {' or '.join(allowed)} for model {job.model.name}",
        )


def _check_hosts_fit(job: JobSpec, path: str, source: str, hosts: list[str]) -> None:
    if job.roles > len(hosts):
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected workers + servers <= {len(hosts)} hosts in the topology",
        )
    if isinstance(job.placement, tuple):
        _check_explicit_placement(job, path, source, hosts)


def _check_command_job(exp: Experiment, job: JobSpec, path: str, source: str) -> None:
    """A command job: no built-in keys, and a program that exists (before any build)."""
    for key in BUILTIN_ONLY:
        given = key in job.model_fields_set and (key != "servers" or job.servers)
        if given:
            raise SpecError(
                source,
                f"{path}.{key}",
                _shown(job, key),
                "not allowed with command (your program does its own training)",
            )
    if exp.controller.priority == "smallest-first":
        raise SpecError(
            source,
            "controller.priority",
            "smallest-first",
            f"expected none, fixed or las with command job {job.name} "
            "(smallest-first ranks built-in models by size)",
        )
    workdir = command_workdir(job, source)
    if not workdir.is_dir():
        raise SpecError(source, f"{path}.workdir", job.workdir, "expected an existing directory")
    argv = expand_command(job.command)
    if _program(argv[0], workdir) is None:
        raise SpecError(
            source,
            f"{path}.command.0",
            job.command[0],
            "expected a program on the PATH or an executable file at that path",
        )
    if argv[0] == sys.executable and len(argv) > 1 and argv[1].endswith(".py"):
        if not (workdir / argv[1]).is_file():
            raise SpecError(
                source, f"{path}.command.1", argv[1], f"expected a Python file in {workdir}"
            )


def _shown(job: JobSpec, key: str) -> object:
    """A built-in key's value as the user wrote it (a model or transport by its tag)."""
    if key == "model":
        return job.model.name
    if key == "transport":
        return job.transport.kind
    return getattr(job, key)


PYTHON = "{python}"  # stands for the project's interpreter in a command


def expand_command(command: tuple[str, ...]) -> list[str]:
    """`command` with {python} replaced by the interpreter that runs the harness."""
    return [arg.replace(PYTHON, sys.executable) for arg in command]


def command_workdir(job: JobSpec, source: str) -> Path:
    """The directory a command job runs in (default: the spec file's)."""
    return resolve(job.workdir or ".", source)


def _program(name: str, workdir: Path) -> str | None:
    if "/" not in name:
        return shutil.which(name)
    path = workdir / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _check_traffic(exp: Experiment, source: str, topo) -> None:
    """Traffic hosts exist and avoid the jobs' hosts unless told otherwise; CDFs parse."""

    known = set(topo.host_names())
    used = {h for p in place(exp, topo).values() for h in p.hosts} if exp.traffic else set()
    for i, entry in enumerate(exp.traffic):
        path = f"traffic.{i}"
        if entry.kind == "flows" and entry.hosts == "free" and len(known - used) < 2:
            raise SpecError(
                source,
                f"{path}.hosts",
                "free",
                f"expected at least 2 hosts no job uses ({len(known - used)} left): "
                "list hosts, or use all",
            )
        named = [("src", entry.src), ("dst", entry.dst)] if entry.kind == "iperf3" else []
        if entry.kind == "flows" and isinstance(entry.hosts, tuple):
            named = [(f"hosts.{j}", h) for j, h in enumerate(entry.hosts)]
        for key, host in named:
            if host not in known:
                raise SpecError(
                    source,
                    f"{path}.{key}",
                    host,
                    f"expected a host of the topology (h1..h{len(known)})",
                )
            if host in used and not entry.share_job_hosts:
                raise SpecError(
                    source,
                    f"{path}.{key}",
                    host,
                    "expected a host no job is placed on (or share_job_hosts: true)",
                )
        if entry.kind == "iperf3" and entry.src == entry.dst:
            raise SpecError(source, f"{path}.dst", entry.dst, "expected a host other than src")
        if entry.kind == "flows":
            _check_flows(entry, path, source)
        _check_class(exp, entry.priority, f"{path}.priority", source)


def _check_on_failure(job: JobSpec, path: str, source: str) -> None:
    """`continue` needs a server that can drop a worker: a plain PS job (no trees, whose
    aggregators would take their subtree with them; not gloo, which has no server)."""
    if job.on_failure == "fail":
        if job.worker_timeout_s is not None:
            raise SpecError(
                source, f"{path}.worker_timeout_s", job.worker_timeout_s,
                "expected only with on_failure: continue",
            )  # fmt: skip
        return
    why = (
        "a command job" if job.is_command
        else "sync allreduce" if job.sync == "allreduce"
        else "gloo" if job.transport.kind == "gloo"
        else f"aggregation {job.aggregation_name}" if job.aggregation_name != "none"
        else "one worker" if job.workers < 2
        else None
    )  # fmt: skip
    if why:
        raise SpecError(
            source, f"{path}.on_failure", "continue",
            f"expected fail for {why} (continue is for sync ps over tcp or blt, no "
            "aggregation, 2 or more workers)",
        )  # fmt: skip


def _check_faults(exp: Experiment, source: str, topo) -> None:
    """Faults name a link, switch or job host of the topology."""

    neighbours: dict[str, set[str]] = {}
    for link in topo.link_info:
        neighbours.setdefault(link.a, set()).add(link.b)
        neighbours.setdefault(link.b, set()).add(link.a)
    used = {h for p in place(exp, topo).values() for h in p.hosts} if exp.faults else set()
    for i, fault in enumerate(exp.faults):
        path = f"faults.{i}"
        if fault.kind == "link":
            a, b = fault.link
            if a not in neighbours:
                raise SpecError(
                    source, f"{path}.link.0", a, "expected a switch or host of the topology"
                )
            if b not in neighbours[a]:
                raise SpecError(
                    source, f"{path}.link.1", b,
                    f"expected a neighbour of {a} ({', '.join(sorted(neighbours[a]))})",
                )  # fmt: skip
        elif fault.kind == "switch" and fault.switch not in topo.switch_info:
            raise SpecError(
                source, f"{path}.switch", fault.switch, "expected a switch of the topology"
            )
        elif fault.kind == "host" and fault.host not in used:
            raise SpecError(
                source, f"{path}.host", fault.host,
                f"expected a host a job runs on ({', '.join(sorted(used, key=_host_order))})",
            )  # fmt: skip


def _host_order(name: str) -> int:
    return int(name[1:]) if name[1:].isdigit() else 0


def _check_flows(entry, path: str, source: str) -> None:
    if isinstance(entry.hosts, tuple) and len(set(entry.hosts)) < 2:
        raise SpecError(source, f"{path}.hosts", list(entry.hosts), "expected at least 2 hosts")
    try:
        load_cdf(cdf_path(entry.distribution, resolve(".", source)))
    except CdfError as exc:
        raise SpecError(
            source,
            f"{path}.distribution",
            entry.distribution,
            f"expected websearch, datamining or a CDF file: {exc}",
        ) from None


def _check_drop_at(job: JobSpec, path: str, source: str) -> None:
    """A reduced message needs a sender that knows what it may leave out: the parameter
    server's push and pull may lose entries; the ring's agreement bitmaps and a tree's
    counts must arrive whole, and only their receiver knows it."""
    if getattr(job.transport, "drop_at", "receiver") == "receiver":
        return
    if job.sync != "ps" or job.aggregation != "none":
        raise SpecError(source, f"{path}.transport.drop_at", "sender",
                        "expected receiver unless sync: ps without aggregation")  # fmt: skip


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
    if job.workers > MAX_TREE_COUNT:
        raise SpecError(
            source,
            f"{path}.workers",
            job.workers,
            f"expected <= {MAX_TREE_COUNT} with aggregation (per-entry counts travel as one byte)",
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


# What a cluster run does not do yet, each with the key that asks for it.
CLUSTER_UNSUPPORTED = {
    "faults": "expected no faults on a cluster (a fault acts in this machine's namespaces)",
    "traffic": "expected no background traffic on a cluster (its agents start here only)",
}


def _check_cluster(exp: Experiment, source: str, topo) -> None:
    """Distinct servers; `pod` placement needs a fat-tree with a pod per server; only
    what a cluster run can do (built-in training jobs, netem loss)."""
    if exp.cluster is None:
        return
    servers = list(exp.cluster.servers)
    for i, server in enumerate(servers):
        if server in servers[:i]:
            raise SpecError(
                source, f"cluster.servers.{i}", server, "expected servers named once each"
            )
    for key, expected in CLUSTER_UNSUPPORTED.items():
        if getattr(exp, key):
            raise SpecError(source, key, f"{len(getattr(exp, key))} entries", expected)
    for i, job in enumerate(exp.jobs):
        if job.is_command:
            raise SpecError(source, f"jobs.{i}.command", job.command,
                            "expected a built-in training job on a cluster")  # fmt: skip
    if exp.network.loss_backend == "nftables":
        raise SpecError(source, "network.loss_backend", "nftables",
                        "expected auto or netem: a cluster shapes and drops with tc on "
                        "every server")  # fmt: skip
    if exp.cluster.placement != "pod":
        return
    if exp.topology.kind != "fat-tree":
        raise SpecError(
            source,
            "cluster.placement",
            "pod",
            f"expected switchbin or roundrobin for a {exp.topology.kind} (pods are fat-tree's)",
        )
    pods = exp.topology.k
    if pods < len(servers):
        raise SpecError(
            source,
            "cluster.servers",
            servers,
            f"expected at most {pods} servers for placement pod (a k={pods} fat-tree has "
            f"{pods} pods)",
        )
