"""The harness <-> controller contract: the three documents the two processes exchange.

The harness writes a `TopologyDoc` and a `JobsDoc` as JSON before it starts the
controller; the controller writes a `ReadyReport` once every switch is programmed.
Both sides build and read them only through these records, so renaming a key is a
change here plus its users, and a missing or unknown key fails loudly, naming it.

Plain pydantic (no os-ken, no Mininet): the harness, the controller and the tests all
import it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class ContractError(ValueError):
    """A contract document that does not match its record (the message names the key)."""


class _Record(BaseModel):
    # frozen: a document read is a value; forbid: an unknown key is a typo, not data
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict:
        """JSON-ready data (what goes into the file)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data):
        """Validate `data` (a dict, or already a record) into this record."""
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(document)"
            raise ContractError(
                f"{cls.__name__}: key {where!r}: {first['msg'].lower()}"
                f" (got {first.get('input')!r:.80})"
            ) from None


# ------------------------------------------------------------------ topology document


class SwitchRecord(_Record):
    """One OpenFlow switch. `pod`/`index` locate it inside its tier."""

    name: str
    dpid: int
    role: str  # edge | agg | core | leaf | spine | dumbbell
    pod: int
    index: int


class HostRecord(_Record):
    """One emulated host. `rack` is its edge/leaf switch; `pod` groups racks."""

    name: str
    ip: str
    mac: str
    switch: str
    port: int  # switch port the host hangs off
    rack: int
    pod: int


class LinkRecord(_Record):
    """One bidirectional link and the port numbers at both ends."""

    a: str
    a_port: int
    b: str
    b_port: int
    tier: str


class TopologyDoc(_Record):
    """Everything the controller needs to know about the network it programs."""

    kind: str  # fat-tree | leaf-spine | dumbbell
    k: int | None = None  # fat-tree arity (two-level routing needs it); None otherwise
    switches: tuple[SwitchRecord, ...]
    hosts: tuple[HostRecord, ...]
    links: tuple[LinkRecord, ...]


# ---------------------------------------------------------------------- jobs document


class JobRecord(_Record):
    """What a priority policy knows about a job."""

    name: str
    hosts: tuple[str, ...]
    priority: int | None = None  # spec jobs[].priority, used by `fixed`
    total_bytes: int = 0  # model bytes the job will send in all, used by `smallest-first`


class JobsDoc(_Record):
    """The jobs, the priority policy's parameters and where the controller writes.

    Keys with defaults are the ones a policy may not need (a unit test of `none` gives
    only the first four); the harness always writes them all.
    """

    policy: str  # none | fixed | smallest-first | las
    classes: int
    dscp: tuple[int, ...]  # DSCP of each class, highest class first
    jobs: tuple[JobRecord, ...]
    order: str = "spec"  # fixed: spec | random
    seed: int = 0  # for a random order
    thresholds_bytes: tuple[int, ...] = ()  # las
    poll_ms: int = 500  # las: how often byte counters are read
    t0: float = 0.0  # run start (epoch s): the controller's CSV times count from it
    events_csv: str | None = None  # class changes
    state_json: str | None = None  # policy state, for a restarted controller
    ports_csv: str | None = None  # port changes, for faults.csv


# ---------------------------------------------------------------------- ready report


class ReadyReport(_Record):
    """Written by the controller once every switch answered its barrier."""

    switches: int
    errors: int
