"""Prepare: preflight, then a fresh run directory with the resolved spec, the harness
log and the first metadata, and an unstarted `Testbed`. Nothing is created on the
system before preflight passes."""

from __future__ import annotations

import yaml

from testbed import preflight
from testbed.layout import RunPaths
from testbed.platform import probe
from testbed.progress import RunProgress, log_to
from testbed.results.metadata import Metadata
from testbed.results.rundir import create_run_dir
from testbed.run.build import Testbed
from testbed.runlock import RunLock
from testbed.spec.schema import Experiment
from topologies import build_topology


def prepare(
    exp: Experiment, source: str, out: str | None = None, progress: RunProgress | None = None
) -> Testbed:
    """Preflight, then a fresh run directory (resolved spec, harness log) and an
    unstarted `Testbed` for it."""
    topo = build_topology(exp.topology)
    platform = probe()
    lock = RunLock()
    lock.acquire(exp.name)  # first: a second run refuses here, not at a name collision
    try:
        preflight.check(exp, source, topo, platform)
        run_dir = create_run_dir(exp.name, out)
        lock.describe(run_dir=str(run_dir))
        log_to(RunPaths(run_dir).log("harness"))
        spec = yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False)
        RunPaths(run_dir).spec.write_text(spec)
        return Testbed(exp, topo, platform, run_dir, progress, lock)
    except BaseException:
        lock.release()
        raise


def prepare_run(
    exp: Experiment, source: str, out: str | None, progress: RunProgress
) -> tuple[Testbed, Metadata]:
    """`prepare`, then metadata.json as the run starts."""
    testbed = prepare(exp, source, out, progress)
    return testbed, open_metadata(testbed, source)


def open_metadata(testbed: Testbed, source: str) -> Metadata:
    """metadata.json as the run starts: what it is, where it runs, how links are emulated."""
    exp, platform = testbed.exp, testbed.platform
    builtin = [job for job in exp.jobs if not job.is_command]
    return Metadata(
        testbed.run_dir,
        name=exp.name,
        run_id=testbed.ledger.run_id,
        spec_file=source,
        versions=platform.versions,
        platform={
            "datapath": testbed.datapath,
            "ports": testbed.ports,
            "ports_reason": testbed.ports_reason,
            "ovs_kernel_module": platform.ovs_kernel_module,
            "netem": platform.netem,
            "nftables_egress": platform.nftables_egress,
            "loss_backend": testbed.loss_backend,
            "loss_backend_reason": testbed.loss_reason,
            "loss_seeded": (
                "not seeded: nftables numgen uses the kernel's PRNG"
                if testbed.loss_backend != "netem"
                else "netem seed per link direction"
                if platform.netem_seed
                else "not seeded: this tc/kernel has no netem seed option"
            ),
            "tcp_congestion_control": sorted({j.transport.congestion_control for j in builtin}),
        },
        placement={
            name: {"servers": list(p.servers), "workers": list(p.workers)}
            for name, p in testbed.placements.items()
        },
        hosts={name: info.ip for name, info in testbed.topo.host_info.items()},
        t0_unix=testbed.t0,
    )
