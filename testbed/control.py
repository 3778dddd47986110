"""Start the os-ken controller as its own process and wait for its ready signal.

The harness writes the topology JSON, starts ``python -m controllers`` listening on
127.0.0.1 and a free port, waits until the port accepts connections (so switches
connect at once), and later waits for the "all switches programmed" file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from controllers.contract import JobRecord, JobsDoc, ReadyReport, TopologyDoc
from testbed.errors import TestbedError
from testbed.layout import RunPaths
from testbed.ledger import Ledger, identity, kill_group
from testbed.network.tc import CLASS_DSCP
from testbed.spec.placement import Placement
from testbed.spec.schema import Experiment
from testbed.training.size import total_bytes


def controller_jobs(
    exp: Experiment,
    placements: dict[str, Placement],
    t0: float,
    events_csv: Path,
    ports_csv: Path | None = None,
) -> JobsDoc:
    """What the controller's priority policy needs to know (the contract's jobs document)."""
    policy = exp.controller.priority
    return JobsDoc(
        policy=policy,
        order=exp.controller.priority_order,
        seed=exp.seed,  # for a random order
        classes=exp.controller.priority_classes,
        dscp=tuple(CLASS_DSCP),
        poll_ms=exp.controller.poll_ms,
        thresholds_bytes=tuple(exp.controller.thresholds_bytes()),
        t0=t0,
        events_csv=str(events_csv),
        # the policy's state, for a restarted controller to resume (controllers/priority.py)
        state_json=str(RunPaths(events_csv.parent).controller_state),
        ports_csv=str(ports_csv) if ports_csv else None,  # port changes, for faults.csv
        jobs=tuple(
            JobRecord(
                name=job.name,
                hosts=tuple(placements[job.name].hosts),
                priority=job.priority,
                # MLNET's "communication cost": the model bytes the job will send
                total_bytes=total_bytes(job) if policy == "smallest-first" else 0,
            )
            for job in exp.jobs
        ),
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ControllerProcess:
    """The controller of one run; `start`, `wait_ready`, `stop`."""

    def __init__(
        self,
        topology: TopologyDoc | dict,
        jobs: JobsDoc | dict,
        routing: str,
        run_dir: Path,
        ledger: Ledger,
        listen_host: str = "127.0.0.1",  # a cluster's: the address other servers reach
    ):
        paths = RunPaths(run_dir)
        self.topology_path, self.jobs_path = paths.topology_doc, paths.jobs_doc
        self.ready_path = paths.controller_ready
        self.log_path = paths.log("controller")
        self.documents = {self.topology_path: topology, self.jobs_path: jobs}
        self.routing = routing
        self.ledger = ledger
        self.listen_host = listen_host
        self.port = 0
        self.popen: subprocess.Popen | None = None
        self.ident: list[int] = []
        self.generation = 0  # how many controllers this run started before this one

    def start(self, timeout_s: float = 30) -> int:
        """Start the process; return its OpenFlow port once it is listening."""
        self._write_documents()
        self.port = self.port or free_port()
        options = {
            "--ofp-listen-host": self.listen_host,
            "--ofp-tcp-listen-port": str(self.port),
            "--mlnet-topology": str(self.topology_path),
            "--mlnet-jobs": str(self.jobs_path),
            "--mlnet-routing": self.routing,
            "--mlnet-ready-file": str(self.ready_path),
        }
        argv = [sys.executable, "-m", "controllers", *(a for pair in options.items() for a in pair)]
        log_path = self.log_path.with_name(
            self.log_path.stem + (f"-{self.generation}" if self.generation else "") + ".log"
        )
        with open(log_path, "w") as log:
            self.popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.ledger.add_process(self.popen.pid)
        self.ident = identity(self.popen.pid)
        self._wait(lambda: _listening(self.listen_host, self.port), timeout_s, "start listening")
        return self.port

    def _write_documents(self) -> None:
        """The contract's documents, validated (a dict that misses a key fails here,
        before a process starts)."""
        topology, jobs = self.documents.values()
        for path, doc in zip(
            self.documents, (TopologyDoc.from_json(topology), JobsDoc.from_json(jobs))
        ):
            path.write_text(json.dumps(doc.to_json(), indent=1))

    def wait_ready(self, timeout_s: float = 60) -> ReadyReport:
        """Block until every switch is programmed; return the controller's report."""
        self._wait(self.ready_path.exists, timeout_s, "program every switch")
        report = ReadyReport.from_json(json.loads(self.ready_path.read_text()))
        if report.errors:
            raise TestbedError(
                f"switches rejected {report.errors} controller messages; see {self.log_path}"
            )
        return report

    def kill(self) -> int:
        """SIGKILL the controller (a fault); return its exit status. Switches keep their
        flows: their fail mode is secure (testbed.network.emulated)."""
        os.killpg(self.ident[0], signal.SIGKILL)
        return self.popen.wait()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def restart(self, timeout_s: float = 30) -> None:
        """Start a new controller on the same port. Switches reconnect on their own
        (OVS retries with backoff); `wait_ready` then waits for it to program them all."""
        self.generation += 1
        self.ready_path.unlink(missing_ok=True)
        self.start(timeout_s)

    def stop(self) -> None:
        """Terminate the controller (its whole process group). Idempotent."""
        if self.popen is not None:
            if self.popen.poll() is None and self.ident:
                kill_group(*self.ident)
            elif self.popen.poll() is None:
                # Interrupted between Popen and recording it (seen: Ctrl-C in a study,
                # the controller left running). Its session is its own, and the pid
                # cannot be reused while we have not reaped it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def _wait(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.popen.poll() is not None:
                raise TestbedError(
                    f"controller exited ({self.popen.returncode}) before it could {what}; "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise TestbedError(f"controller did not {what} within {timeout_s:.0f} s")
            time.sleep(0.05)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
