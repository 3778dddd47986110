"""Typed, frozen schema of an experiment spec (design.md §3).

Every key a spec may hold is declared here with its type, range and default; unknown
keys are errors. Units live in key names. Cross-field rules that need the whole spec
(host counts, placement names) live in `testbed.spec.rules`.
The sections live by subject in `types`, `fabric`, `jobs` and `events`; this module
assembles them into `Experiment` and names every one of them, so
``from testbed.spec.schema import X`` reaches any of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

# Every section by its name: users of the schema import from here.
from testbed.spec.events import FaultSpec, FlowsTraffic, Iperf3Traffic, TrafficSpec
from testbed.spec.fabric import (
    DEFAULT_SHAPER_BURST_MS,
    ClusterSpec,
    ControllerSpec,
    DumbbellSpec,
    FatTreeSpec,
    LeafSpineSpec,
    LinkOverride,
    LinkParams,
    NetworkSpec,
    ResultsSpec,
    TopologySpec,
)
from testbed.spec.jobs import (
    BUILTIN_ONLY,
    DEFAULT_WORKER_TIMEOUT_S,
    MAX_TREE_COUNT,
    MODEL_DATASETS,
    BltSpec,
    CnnSpec,
    JobSpec,
    MlpSpec,
    TcpSpec,
    TransportSpec,
)
from testbed.spec.types import Float, Frozen, Int, Name, Str

__all__ = [
    "BUILTIN_ONLY", "DEFAULT_SHAPER_BURST_MS", "DEFAULT_WORKER_TIMEOUT_S", "MAX_TREE_COUNT",
    "MODEL_DATASETS", "BltSpec", "ClusterSpec", "CnnSpec", "ControllerSpec", "DumbbellSpec",
    "Experiment", "FatTreeSpec", "Float", "FlowsTraffic", "Frozen", "Int", "Iperf3Traffic",
    "JobSpec", "LeafSpineSpec", "LinkOverride", "LinkParams", "MlpSpec", "Str", "TcpSpec",
    "TransportSpec",
]  # fmt: skip


class Experiment(Frozen):
    """A whole experiment: one network, one controller, one or more jobs."""

    name: Name
    seed: Int = Field(1, ge=0, le=2**31 - 1)
    topology: TopologySpec = FatTreeSpec()
    network: NetworkSpec = NetworkSpec()
    controller: ControllerSpec = ControllerSpec()
    results: ResultsSpec = ResultsSpec()
    # How training processes start. fork: one forkserver per run imports torch and loads
    # the datasets once, then forks each process into its host (testbed.training.forkserver).
    # exec: a fresh interpreter per process, as before; the control arm of benchmarks/scale.py.
    launcher: Literal["fork", "exec"] = "fork"
    jobs: tuple[JobSpec, ...] = Field(min_length=1)
    traffic: tuple[TrafficSpec, ...] = ()  # background load beside the jobs
    faults: tuple[FaultSpec, ...] = ()  # links, switches, processes broken on purpose
    cluster: ClusterSpec | None = None  # None: the whole network on this machine

    def switch_bands(self) -> int:
        """Priority bands on every switch port: one per class when the controller
        prioritizes, `network.priority_bands` is always or traffic is marked,
        otherwise one."""
        banded = (
            self.controller.priority != "none"
            or self.network.priority_bands == "always"
            or any(t.priority is not None for t in self.traffic)
        )
        return self.controller.priority_classes if banded else 1
