"""What one training process is told to do: the harness writes it as JSON, the
process (``python -m testbed.training ROLE.json``) reads it back."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testbed.spec.schema import JobSpec


@dataclass
class RoleConfig:
    """One process of one job: a worker or a parameter-server shard."""

    job: dict  # JobSpec as plain data; re-validated by the process
    role: str  # "worker" | "server"
    rank: int  # among processes of the same role in the job
    host: str
    ip: str
    seed: int
    records: str  # JSONL file this process appends its records to
    servers: list[list] = field(default_factory=list)  # [ip, port] of each server shard
    workers: list[list] = field(default_factory=list)  # [ip, port] of each worker (rings, gloo)
    port: int = 0  # this process's listening port
    link_mbps: float = 100.0  # slowest host link of the job (blt's default rate)
    # Aggregation trees (testbed.training.tree.Edges as dicts): a worker's place in
    # each shard's tree, a server's its own tree's; [] for direct PS traffic.
    tree: list[dict] = field(default_factory=list)
    fan_in: int = 0  # the largest in-degree of the job's trees (blt's fair share)

    @property
    def spec(self) -> JobSpec:
        return JobSpec.model_validate(self.job)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> RoleConfig:
        return cls(**json.loads(Path(path).read_text()))


class RecordWriter:
    """Appends one JSON object per line and flushes it, so a crash loses nothing
    already measured and the harness can follow progress while the job runs."""

    def __init__(self, path: str):
        self.fh = open(path, "a", buffering=1)

    def write(self, record_type: str, **fields) -> None:
        self.fh.write(json.dumps({"type": record_type, "time": time.time(), **fields}) + "\n")

    def close(self) -> None:
        self.fh.close()
