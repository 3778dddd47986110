"""Build: a ready network for one run, the controller process and the Mininet network
over the spec's topology, checked end to end, and torn down however the run ends.

`Testbed` is usable on its own: the link-fidelity tests and benchmarks use it (through
`testbed.runner.bare_testbed`) to get a ready network without training jobs.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from pathlib import Path

from testbed.control import ControllerProcess, controller_jobs
from testbed.errors import TestbedError
from testbed.layout import RunPaths
from testbed.ledger import Ledger, summarize_removed
from testbed.network import reach
from testbed.network.cluster import controller_address
from testbed.network.emulated import LinkEmulation
from testbed.network.make import make_network
from testbed.network.monitor import LinkMonitor
from testbed.network.protocol import Network
from testbed.platform import Platform
from testbed.progress import RunProgress
from testbed.run.signals import describe, no_sigint, raise_interrupted
from testbed.runlock import RunLock
from testbed.spec.placement import place
from testbed.spec.schema import Experiment
from topologies import GraphTopo

log = logging.getLogger("testbed")
# From the network built to every switch programmed; a cluster's remote switches
# connect over ssh-built tunnels, which take minutes under TCG.
READY_TIMEOUT_S = {"one machine": 60, "cluster": 180}


class Testbed:
    """A ready network for one run: controller + Mininet + link sampling, torn down on exit.

    ``with Testbed(...) as tb:`` returns once every switch is programmed and every
    host pair is reachable; leaving the block removes everything the ledger lists.
    """

    def __init__(
        self,
        exp: Experiment,
        topo: GraphTopo,
        platform: Platform,
        run_dir: Path,
        progress: RunProgress | None = None,
        lock: RunLock | None = None,
    ):
        self.exp, self.topo, self.platform, self.run_dir = exp, topo, platform, run_dir
        self.paths = RunPaths(run_dir)
        self.lock = lock or RunLock()  # released at teardown (prepare takes it)
        self.progress = progress or RunProgress()
        self.t0 = time.time()
        # On a cluster the controller listens where every server's switches reach it
        # (found first: a server with no route fails the run before it records anything).
        self.address = "127.0.0.1"
        if exp.cluster is not None:
            self.address = controller_address(list(exp.cluster.servers))
        self.ledger = Ledger.open(
            f"{exp.name}-{run_dir.name}-{time.time_ns() % 10**6}", str(run_dir)
        )
        self.datapath = platform.datapath(exp.network.datapath)
        self.ports, self.ports_reason = platform.ports(
            exp.network.ports, self.datapath, len(topo.interface_names())
        )
        self.loss_backend, self.loss_reason = platform.loss_backend(exp.network.loss_backend)
        if exp.cluster is not None:  # tc on every server (testbed.network.cluster_net)
            self.loss_backend, self.loss_reason = "netem", "a cluster: netem on every server"
        self.placements = place(exp, topo)
        jobs = controller_jobs(
            exp, self.placements, self.t0, self.paths.table("controller"), self.paths.ports
        )
        self.controller = ControllerProcess(
            topo.document(), jobs, exp.controller.routing, run_dir, self.ledger, self.address
        )
        emulation = LinkEmulation(
            loss_backend=self.loss_backend,
            seed=exp.seed if platform.netem_seed else None,
            bands=exp.switch_bands(),
            burst_ms=exp.network.shaper_burst_ms,
        )
        self.network: Network = make_network(
            topo, self.datapath, self.ports, self.ledger, emulation, exp.cluster, self.address
        )
        self.monitor: LinkMonitor | None = None
        self.timings: dict[str, float] = {}
        self.reachability: dict = {}  # what the reachability check covered
        self.closed = False
        self._inherited: dict[int, object] = {}  # signal -> handler before `start`
        self.teardown_errors: list[str] = []  # what `attempt` caught, for the run's error
        self.teardown_s: float | None = None  # how long `close` took

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Testbed:
        """Bring the network up; on any failure tear down what exists and re-raise.

        From here until `close`, SIGINT raises KeyboardInterrupt and SIGTERM raises
        `Interrupted`, so both end in the same teardown. Both handlers are installed
        whatever was inherited: a shell starts a background job (``cmd &``) with SIGINT
        ignored, and Python then never raises KeyboardInterrupt on its own.
        """
        watched = self._watched_hosts()
        self._inherited = {
            signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
            signal.SIGTERM: signal.signal(signal.SIGTERM, raise_interrupted),
        }
        try:
            self.network.controller_port = self.controller.start()
            port = self.network.controller_port
            self.progress.phase(f"controller listening on {self.address}:{port}")
            self.network.start()
            report = self.controller.wait_ready(
                READY_TIMEOUT_S["one machine" if self.exp.cluster is None else "cluster"]
            )
            self.timings["network_ready_s"] = round(time.time() - self.t0, 3)
            self.progress.phase(
                f"network ready: {len(self.topo.host_info)} hosts, {report.switches} switches "
                f"programmed ({self.datapath} datapath, {self.ports} ports, "
                f"loss via {self.loss_backend})"
            )
            self._check_reachability()
            self.timings["reachable_s"] = round(time.time() - self.t0, 3)
            self.network.enable_loss()
            self.monitor = LinkMonitor(
                self.network,
                self.paths.table("links"),
                self.exp.results.sample_s,
                self.t0,
                classes_path=self.paths.table("link_classes"),
                hosts=watched,
            )
            self.monitor.start()
        except BaseException:
            self.close()
            raise
        return self

    def _watched_hosts(self) -> list[str] | None:
        """Hosts whose egress queues the link monitor reads: all of them, or on a large
        fabric (more than reach.FULL_CHECK_MAX_HOSTS hosts) those jobs and traffic use."""
        names = self.topo.host_names()
        if self.exp.cluster is not None:
            return []  # one ssh call per host and sample is too many: queues unread
        if len(names) <= reach.FULL_CHECK_MAX_HOSTS:
            return None
        if any(t.kind == "flows" and not isinstance(t.hosts, tuple) for t in self.exp.traffic):
            return None  # "free" or "all": most hosts carry traffic
        used = {h for p in self.placements.values() for h in p.hosts}
        for t in self.exp.traffic:
            used |= set(t.hosts) if t.kind == "flows" else {t.src, t.dst}
        return [h for h in names if h in used]

    def close(self) -> list[dict]:
        """Stop sampling, controller and network; release the ledger. Returns the link
        report (empty if sampling never started). Only the first call does anything."""
        if self.closed:
            return []
        self.closed = True
        start = time.monotonic()
        try:
            with no_sigint():  # a second Ctrl-C must not cut the teardown short
                return self._teardown()
        finally:
            self.teardown_s = round(time.monotonic() - start, 3)
            for signum, handler in self._inherited.items():
                signal.signal(signum, handler)

    def _teardown(self) -> list[dict]:
        links = self.attempt("link monitor", self._stop_monitor) or []
        self.attempt("controller", self.controller.stop)
        self.attempt("network", self.network.stop)
        # whatever a failed step above left behind
        leftover = self.attempt("ledger's leftovers", self.ledger.release) or []
        if leftover:
            log.warning("ledger removed leftovers: %s", summarize_removed(leftover))
        self.lock.release()
        return links

    def attempt(self, what: str, step):
        """Run one teardown step; on failure log it, note it for the run's error, and
        carry on with the next (one failed step must not leave the rest standing)."""
        try:
            return step()
        except Exception as exc:
            log.error("teardown of %s failed\n%s", what, traceback.format_exc())
            self.teardown_errors.append(f"stopping the {what}: {describe(exc)}")
            return None

    def _stop_monitor(self) -> list[dict]:
        """Final sample, then the per-direction report for metadata.json."""
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return []
        monitor.stop()
        return monitor.report()

    def _check_reachability(self) -> None:
        plan = reach.probe_plan(self.topo.host_names(), self.exp.seed)
        self.reachability = reach.describe(plan)
        failures = reach.unreachable_pairs(self.network, plan)
        if failures:
            sample = ", ".join(f"{a}->{b}" for a, b in failures[:5])
            raise TestbedError(
                f"{len(failures)} host pairs unreachable after programming: {sample}"
            )
        r = self.reachability
        if r["mode"] == "all pairs":
            self.progress.phase(f"all {r['pairs']} host pairs reachable")
        else:
            self.progress.phase(
                f"{r['pairs']} sampled host pairs reachable ({r['targets_per_host']} per host, "
                f"of {r['all_pairs']:,}; see reachability in metadata.json)"
            )
