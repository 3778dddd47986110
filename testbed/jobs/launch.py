"""Start, watch and stop the training processes of every job.

One process per host role, inside its Mininet host's network namespace, in a session
of its own (so its whole process group can be killed), its output going to
``logs/<job>-<role><rank>-<host>.log``. With ``launcher: fork`` (the default) the
run's forkserver forks it (`testbed.jobs.forkserver`); with ``launcher: exec`` it is a
fresh interpreter started with ``mnexec``. A command job runs the user's program
instead, once per host (`testbed.jobs.command`). A job starts `start_s` seconds
after the network is ready; it ends ``ok`` when every process exits 0, ``failed`` as
soon as one exits otherwise, ``timeout`` when it outlives its `timeout_s` (the rest
are stopped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from subprocess import STDOUT, TimeoutExpired

from testbed.jobs import command
from testbed.jobs.command import CommandProcess
from testbed.jobs.forkserver import ForkServer
from testbed.jobs.remote import ClusterLauncher, RemoteProcess
from testbed.jobs.runs import JobRun, RoleProcess, culprit, exit_codes, summary
from testbed.jobs.trees import Tree, build_trees, plan_edges, racks_of
from testbed.layout import RunPaths
from testbed.ledger import Ledger, identity, kill_group
from testbed.network.protocol import Network
from testbed.spec.placement import Placement
from testbed.spec.schema import Experiment, JobSpec
from testbed.training.role import RoleConfig

log = logging.getLogger("testbed.jobs")

STOP_TIMEOUT_S = 30  # for the exit status of a process already killed
BLAME_GRACE_S = 1.0  # how long a failure waits for a signal death it may be the consequence of
PS_PORT = 7070  # every process has a host of its own, so one port number suffices

# One thread per process: the machine's cores are shared by every host and OVS.
PROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class JobRunner:
    """All jobs of an experiment on a started network."""

    def __init__(
        self,
        exp: Experiment,
        net: Network,
        placements: dict[str, Placement],
        run_dir: Path,
        ledger: Ledger,
        forkserver: ForkServer | None = None,
        source: str = "script",
    ):
        self.net = net
        self.source = source  # the spec file: command jobs' relative paths start there
        self.ledger = ledger
        self.forkserver = forkserver  # None: exec a fresh interpreter per process
        # A cluster's processes start on their hosts' servers (testbed.jobs.remote).
        self.cluster = ClusterLauncher(net, ledger, run_dir) if net.spans_servers else None
        racks = racks_of(net.topo)
        self.jobs = []
        ips = {name: info.ip for name, info in net.topo.host_info.items()}
        for job in exp.jobs:
            placement = placements[job.name]
            if job.is_command:
                env = {**os.environ, **PROCESS_ENV}
                planned = command.plan_command(job, placement, ips, run_dir, source, env)
                self.jobs.append(JobRun(job, placement, planned))
                continue
            trees = build_trees(job, placement, racks)
            self.jobs.append(
                JobRun(job, placement, self._plan(exp, job, placement, trees, run_dir), trees)
            )
        self.run_dir = run_dir
        for job in self.jobs:
            self._persist(job)

    # ------------------------------------------------------------------ planning

    def _plan(
        self, exp: Experiment, job: JobSpec, placement: Placement, trees: list[Tree], run_dir: Path
    ) -> list[RoleProcess]:
        paths = RunPaths(run_dir)
        paths.job(job.name).mkdir(parents=True, exist_ok=True)
        ips = {name: info.ip for name, info in self.net.topo.host_info.items()}
        servers = [[ips[h], PS_PORT] for h in placement.servers]
        workers = [[ips[h], PS_PORT] for h in placement.workers]
        link_mbps = min(
            d.params.bw_mbps
            for d in self.net.topo.directions()
            if {d.src, d.dst} & set(placement.hosts)
        )
        hosts = role_hosts(placement)
        # A server listens on PS_PORT; a worker on PS_PORT + 1 + s for its children in
        # server s's tree.
        edges = plan_edges(
            trees,
            lambda node, s: [ips[hosts[node]], PS_PORT + (0 if node.startswith("s") else 1 + s)],
        )
        fan_in = max((t.in_degree() for t in trees), default=0)
        roles = [("server", rank, h) for rank, h in enumerate(placement.servers)]
        roles += [("worker", rank, h) for rank, h in enumerate(placement.workers)]
        planned = []
        for role, rank, host in roles:
            stem = f"{role}{rank}"
            config = RoleConfig(
                job=job.model_dump(mode="json"),
                role=role,
                rank=rank,
                host=host,
                ip=ips[host],
                seed=exp.seed,
                records=self._records(host, paths.records(job.name, stem)),
                servers=servers,
                workers=workers,
                port=PS_PORT,
                link_mbps=link_mbps,
                tree=edges.get(stem, []),
                fan_in=fan_in,
            )
            config.save(paths.role_config(job.name, stem))
            planned.append(
                RoleProcess(
                    config,
                    paths.role_config(job.name, stem),
                    paths.log(f"{job.name}-{stem}-{host}"),
                )
            )
        return planned

    def _records(self, host: str, path: Path) -> str:
        return self.cluster.records_path(host, path) if self.cluster else str(path)

    # ------------------------------------------------------------------ running

    def start_due(self, elapsed_s: float) -> list[JobRun]:
        """Launch every pending job whose `start_s` has come; return those launched."""
        due = [j for j in self.jobs if j.status == "pending" and elapsed_s >= j.spec.start_s]
        for job in due:
            self._launch(job)
        return due

    def _launch(self, job: JobRun) -> None:
        job.launched_at = time.time()
        job.status = "running"
        self._persist(job)
        for proc in job.processes:  # servers first: workers retry until they listen
            host = self.net.host(proc.config.host)
            if isinstance(proc, CommandProcess):
                command.start(proc, host)
                self.ledger.add_process(proc.popen.pid)
                proc.ident = identity(proc.popen.pid)
                continue
            # gloo resolves the hostname outside the namespace unless told the interface.
            env = {"GLOO_SOCKET_IFNAME": f"{proc.config.host}-eth0"}
            if self.cluster is not None:
                env = {**PROCESS_ENV, **env}
                proc.popen = self.cluster.start(
                    proc.config.host, proc.config_path, proc.log_path, env
                )
            elif self.forkserver is not None:
                proc.popen = self.forkserver.spawn(proc.config_path, proc.log_path, host.pid, env)
            else:
                with open(proc.log_path, "w") as log:
                    proc.popen = host.popen(
                        [sys.executable, "-m", "testbed.training", str(proc.config_path)],
                        stdout=log,
                        stderr=STDOUT,
                        env={**os.environ, **PROCESS_ENV, **env},
                    )
            self.ledger.add_process(proc.popen.pid)
            proc.ident = identity(proc.popen.pid)

    def poll(self) -> list[JobRun]:
        """Update job states from their processes' exit codes; return jobs that ended now."""
        ended = []
        for job in self.jobs:
            if job.status != "running":
                continue
            codes = exit_codes(job.processes)
            if job.overdue(time.time()):
                job.error = f"still running after timeout_s = {job.spec.timeout_s} s"
                job.status = "timeout"
                self._stop(job)
            elif self._tolerated(job, codes):
                job.status = "ok" if all(c is not None for c in codes) else "running"
            elif any(c not in (None, 0) for c in codes):
                job.error = self._error(culprit(job.processes, BLAME_GRACE_S), job)
                job.status = "failed"
                self._stop(job)
            elif all(c == 0 for c in codes):
                job.status = "ok"
            if job.done:
                for proc in job.processes:
                    proc.join_readers()
                self._persist(job)
                ended.append(job)
        return ended

    def _tolerated(self, job: JobRun, codes: list[int | None]) -> bool:
        """Under on_failure: continue, whether every failure so far is a worker's and a
        worker is left (the server goes on without them); notes each lost worker."""
        failed = [p for p, c in zip(job.processes, codes) if c not in (None, 0)]
        if job.spec.on_failure != "continue" or not failed:
            return False
        workers = [p for p in job.processes if p.config.role == "worker"]
        if any(p.config.role != "worker" for p in failed) or len(failed) == len(workers):
            return False
        for proc in failed:
            note = f"{proc.label} ({proc.popen.returncode})"
            if note not in job.lost:
                job.lost.append(note)
                self._persist(job)
        return True

    def kill_host(self, host: str, fault: str) -> list[str]:
        """SIGKILL the running job processes on `host` (a fault); return their labels."""
        killed = []
        for job in self.jobs:
            for proc in job.processes:
                running = proc.popen is not None and proc.popen.poll() is None
                if running and proc.config.host == host:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.ident[0], signal.SIGKILL)
                    job.killed[proc.label] = fault
                    killed.append(f"{proc.label} of {job.spec.name}")
        return killed

    def _error(self, proc: RoleProcess, job: JobRun) -> str:
        error = f"{proc.blame} exited {proc.popen.returncode}: {proc.tail()}"
        if proc.label in job.killed:
            error = f"{proc.blame} killed by {job.killed[proc.label]}"
        if self.forkserver is not None and self.forkserver.exited is not None:
            error += f" (the forkserver exited {self.forkserver.exited} first)"
        return error

    def tree_report(self) -> dict[str, list[dict[str, list[str]]]]:
        """Each aggregating job's trees, parent -> children, for metadata.json."""
        report = {}
        for job in self.jobs:
            if job.trees:
                hosts = role_hosts(job.placement)
                report[job.spec.name] = [t.as_dict(hosts) for t in job.trees]
        return report

    @property
    def all_done(self) -> bool:
        return all(job.done for job in self.jobs)

    def stop_all(self) -> None:
        """Stop every process still running; unfinished jobs become ``interrupted``.
        A cluster's records then come home from every server."""
        for job in self.jobs:
            if not job.done:
                job.status = "interrupted"
                self._stop(job)
                self._persist(job)
            else:
                self._stop(job)
        if self.cluster is not None:
            missing = self.cluster.collect()
            if missing:
                log.warning("records never written: %s", ", ".join(missing))

    def _stop(self, job: JobRun) -> None:
        for proc in job.processes:
            if proc.popen is not None:
                if proc.popen.poll() is None:
                    if isinstance(proc.popen, RemoteProcess):
                        proc.popen.stop()  # its group on its server; then ssh's here
                    kill_group(*proc.ident)  # dead on return: SIGTERM, then SIGKILL
                try:
                    proc.popen.wait(timeout=STOP_TIMEOUT_S)
                except TimeoutExpired:  # reaped by no one in time: the ledger has its group
                    log.warning("%s: no exit status after %d s", proc.label, STOP_TIMEOUT_S)
            proc.join_readers()

    # ------------------------------------------------------------------ reporting

    def _persist(self, job: JobRun) -> None:
        """Write the job's state to raw/<job>/job.json at every change, so that jobs.csv
        can be rebuilt from the run directory alone (testbed.results.tables)."""
        path = RunPaths(self.run_dir).job_state(job.spec.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary(job), indent=1) + "\n")
        os.replace(tmp, path)


def role_hosts(placement: Placement) -> dict[str, str]:
    """``server<s>`` / ``worker<r>`` -> host."""
    hosts = {f"server{s}": h for s, h in enumerate(placement.servers)}
    hosts.update({f"worker{r}": h for r, h in enumerate(placement.workers)})
    return hosts
