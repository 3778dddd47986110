"""Cross-field rules: checks that need the whole experiment (and its topology).

Each rule raises a `SpecError` naming the key path, so `testbed check` can point at
the exact line to fix.
"""

from __future__ import annotations

from testbed.cdf import CdfError, cdf_path, load_cdf
from testbed.errors import SpecError
from testbed.spec.job_rules import check_class, check_job
from testbed.spec.paths import resolve
from testbed.spec.placement import place
from testbed.spec.schema import (
    Experiment,
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
        check_job(exp, i, job, source, hosts)
    _check_capacity(exp, source, hosts)
    _check_traffic(exp, source, topo)
    _check_faults(exp, source, topo)
    _check_cluster(exp, source, topo)


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
        check_class(exp, entry.priority, f"{path}.priority", source)


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
