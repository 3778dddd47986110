"""Every path and file name of a run directory, in one place.

The harness writes by these names and analysis reads by them, so a run directory
copied to a laptop is understood without the harness: this module imports nothing of
the project. Layout (results/README.md has the columns)::

    spec.yaml  metadata.json  <table>.csv (iterations, jobs, links, flows, ...)
    logs/      one log per host process, the controller and the harness
    raw/       per-process JSONL records, role configs and the controller's documents
      <job>/       job.json, worker<rank>.jsonl, server<rank>.jsonl, role configs
      traffic/     plan.json, agent configs, flows-*.jsonl, iperf3 reports, stopped.json
      faults/      the fault runner's probes and records
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW = "raw"
LOGS = "logs"
SPEC = "spec.yaml"
METADATA = "metadata.json"
JOB_STATE = "job.json"  # raw/<job>/job.json: a job's spec fields, status, launch time
TIER_BYTES = "tiers.json"  # raw/tiers.json: the controller's counters per job and tier
TRAFFIC = "traffic"  # raw/traffic/
FAULTS = "faults"  # raw/faults/


def records_name(stem: str) -> str:
    """The file name of one process's records: worker0 -> worker0.jsonl (a stem with
    `*` makes a glob pattern)."""
    return f"{stem}.jsonl"


SNAPSHOTS = "params"  # raw/<job>/params/it<iteration>-worker<rank>.npy, at evaluations


def snapshot_path(records: str | Path, iteration: int) -> Path:
    """Where the worker whose records file is `records` saves its parameters at an
    evaluation of `iteration` (raw/<job>/params/it000019-worker2.npy)."""
    records = Path(records)
    return records.parent / SNAPSHOTS / f"it{iteration:06d}-{records.stem}.npy"


@dataclass(frozen=True)
class RunPaths:
    """The files of the run directory `root` (nothing is created by asking)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------ top level

    @property
    def spec(self) -> Path:
        return self.root / SPEC

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    def table(self, name: str) -> Path:
        """A tidy table of the run, e.g. ``table("iterations")`` -> iterations.csv."""
        return self.root / f"{name}.csv"

    # ------------------------------------------------------------- folders

    @property
    def raw(self) -> Path:
        return self.root / RAW

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    def log(self, stem: str) -> Path:
        """logs/<stem>.log."""
        return self.logs / f"{stem}.log"

    def job(self, name: str) -> Path:
        """raw/<job>/: a job's records, role configs and state."""
        return self.raw / name

    def job_state(self, name: str) -> Path:
        return self.job(name) / JOB_STATE

    def records(self, job: str, stem: str = "*") -> Path:
        """raw/<job>/<stem>.jsonl: one process's records (stem: worker0, server1, ...;
        the default makes a glob pattern)."""
        return self.job(job) / records_name(stem)

    def role_config(self, job: str, stem: str) -> Path:
        """raw/<job>/<stem>.json: one process's `RoleConfig`."""
        return self.job(job) / f"{stem}.json"

    @property
    def traffic(self) -> Path:
        return self.raw / TRAFFIC

    @property
    def traffic_plan(self) -> Path:
        return self.traffic / "plan.json"

    @property
    def traffic_stopped(self) -> Path:
        """raw/traffic/stopped.json: when the harness stopped the traffic."""
        return self.traffic / "stopped.json"

    def flow_records(self, index: int | str = "*", host: str = "*") -> Path:
        """raw/traffic/flows-<entry>-<host>.jsonl (the defaults make a glob pattern)."""
        return self.traffic / f"flows-{index}-{host}.jsonl"

    def traffic_file(self, stem: str) -> Path:
        """raw/traffic/<stem>.json: an agent's config or an iperf3 report."""
        return self.traffic / f"{stem}.json"

    @property
    def faults(self) -> Path:
        return self.raw / FAULTS

    # ----------------------------------------------- the controller's files

    @property
    def topology_doc(self) -> Path:
        return self.raw / "topology.json"

    @property
    def jobs_doc(self) -> Path:
        return self.raw / "controller-jobs.json"

    @property
    def controller_ready(self) -> Path:
        return self.raw / "controller.ready"

    @property
    def controller_state(self) -> Path:
        return self.raw / "controller_state.json"

    @property
    def ports(self) -> Path:
        """raw/ports.csv: port changes the controller saw (faults.csv reads them)."""
        return self.raw / "ports.csv"

    @property
    def tier_bytes(self) -> Path:
        return self.raw / TIER_BYTES


STUDY_SPEC = "study.yaml"  # the study's spec as run, with what its runs resolved to
REFERENCE = "reference.yaml"  # a paper study's copy of the paper's figures
REPORT = "report.md"  # `testbed report`'s output, in a run or study directory


@dataclass(frozen=True)
class StudyPaths:
    """The files of the study directory `root`; each of its runs is a run directory."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def spec(self) -> Path:
        return self.root / STUDY_SPEC

    @property
    def reference(self) -> Path:
        return self.root / REFERENCE

    @property
    def attempts(self) -> Path:
        """attempts/: runs that did not end ok, kept when a resumed study redoes them."""
        return self.root / "attempts"

    def table(self, name: str) -> Path:
        """runs.csv, summary.csv, profile.csv ..."""
        return self.root / f"{name}.csv"

    def run(self, name: str) -> RunPaths:
        return RunPaths(self.root / name)
