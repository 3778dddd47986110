"""Spec sections of what happens beside the jobs: background traffic and faults."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
)

from testbed.spec.types import Bool, Float, Frozen, Int, Name, Str

# ------------------------------------------------------------------------ traffic


class _TrafficBase(Frozen):
    # Seconds after "network ready"; no duration_s: until every job has ended.
    start_s: Float = Field(0.0, ge=0, le=86_400)
    duration_s: Float | None = Field(None, gt=0, le=86_400)
    # Best effort (unmarked: the lowest band) unless a class is given; then its
    # packets carry that class's DSCP, as a job's would.
    priority: Int | None = Field(None, ge=0, le=7)
    # Whether the entry may use hosts that jobs run on (OptiReduce loads workers).
    share_job_hosts: Bool = False


class Iperf3Traffic(_TrafficBase):
    """One iperf3 client -> server pair (testbed.traffic.runner)."""

    kind: Literal["iperf3"]
    src: Name
    dst: Name
    proto: Literal["tcp", "udp"] = "tcp"
    rate_mbps: Float | None = Field(None, gt=0, le=10_000)  # default: tcp unlimited, udp 1
    parallel: Int = Field(1, ge=1, le=16)


class FlowsTraffic(_TrafficBase):
    """Poisson flow arrivals between random host pairs at a fraction of the hosts'
    access bandwidth, sizes from an empirical CDF (testbed.traffic.agent)."""

    kind: Literal["flows"]
    load: Float = Field(gt=0, le=1)
    # websearch (DCTCP) | datamining (VL2) | a CDF file: "size_bytes cdf" lines
    distribution: Str = "websearch"
    # free: hosts no job uses; all: every host; or a list of hosts.
    hosts: Literal["free", "all"] | tuple[Name, ...] = "free"


TrafficSpec = Annotated[Union[Iperf3Traffic, FlowsTraffic], Field(discriminator="kind")]


# ------------------------------------------------------------------------- faults


class _FaultBase(Frozen):
    # Seconds after "network ready": the clock of jobs' start_s.
    at_s: Float = Field(ge=0, le=86_400)


class LinkFault(_FaultBase):
    """Both ends of a link down (a cable pull) or up again."""

    kind: ClassVar[str] = "link"

    link: tuple[Name, Name]
    action: Literal["down", "up"]


class SwitchFault(_FaultBase):
    """Every link of a switch down (as its neighbours see a dead switch) or up again."""

    kind: ClassVar[str] = "switch"

    switch: Name
    action: Literal["down", "up"]


class HostFault(_FaultBase):
    """SIGKILL to the job process (training or command) on a host."""

    kind: ClassVar[str] = "host"

    host: Name
    action: Literal["kill"]


class ControllerFault(_FaultBase):
    """SIGKILL to the controller process."""

    kind: ClassVar[str] = "controller"

    controller: Literal["kill"]


FAULT_KINDS = ("link", "switch", "host", "controller")


def _fault_kind(value: object) -> str | None:
    """Which fault an entry is, by the one kind key it holds (tags carry a "-" so
    error paths never mistake them for the user's keys)."""
    if isinstance(value, BaseModel):  # validating an Experiment's own faults again
        keys = type(value).model_fields
    else:
        keys = value if isinstance(value, dict) else {}
    kinds = [k for k in FAULT_KINDS if k in keys]
    return f"{kinds[0]}-fault" if len(kinds) == 1 else None


FaultSpec = Annotated[
    Union[
        Annotated[LinkFault, Tag("link-fault")],
        Annotated[SwitchFault, Tag("switch-fault")],
        Annotated[HostFault, Tag("host-fault")],
        Annotated[ControllerFault, Tag("controller-fault")],
    ],
    Discriminator(
        _fault_kind,
        custom_error_type="fault_kind",
        custom_error_message="expected exactly one of the keys link, switch, host, controller",
    ),
]


# A server as ssh reaches it: a host name or an IPv4 address, never an ssh option.
