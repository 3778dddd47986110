"""Typed, frozen schema of an experiment spec (design.md §3).

Every key a spec may hold is declared here with its type, range and default; unknown
keys are errors. Units live in key names. Cross-field rules that need the whole spec
(host counts, placement names) live in `testbed.spec.rules`.
"""

from __future__ import annotations

import shlex
from typing import Annotated, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)

# Scalars are strict (no "4" -> 4 coercion); containers stay lax so YAML lists can
# become tuples, which keeps the frozen objects hashable and immutable.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=40)]


class Frozen(BaseModel):
    """Base for every spec section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- links


class LinkParams(Frozen):
    """Emulation parameters of one link (applied in each direction)."""

    bw_mbps: Float = Field(100.0, gt=0, le=10_000)
    delay_ms: Float = Field(0.0, ge=0, le=10_000)
    jitter_ms: Float = Field(0.0, ge=0, le=10_000)
    loss_pct: Float = Field(0.0, ge=0, lt=100)
    queue_pkts: Int = Field(100, ge=1, le=100_000)


class LinkOverride(Frozen):
    """A partial `LinkParams`: only the keys given replace the defaults."""

    bw_mbps: Float | None = Field(None, gt=0, le=10_000)
    delay_ms: Float | None = Field(None, ge=0, le=10_000)
    jitter_ms: Float | None = Field(None, ge=0, le=10_000)
    loss_pct: Float | None = Field(None, ge=0, lt=100)
    queue_pkts: Int | None = Field(None, ge=1, le=100_000)

    def apply(self, base: LinkParams) -> LinkParams:
        """Return `base` with the link keys set here replaced."""
        fields = set(LinkParams.model_fields)
        return base.model_copy(update=self.model_dump(exclude_none=True, include=fields))


class DirectedOverride(LinkOverride):
    """Parameters of one direction of one link (src's egress towards dst)."""

    src: Name
    dst: Name


# ------------------------------------------------------------------------ topology


class _TopologyBase(Frozen):
    link: LinkParams = LinkParams()
    # Asymmetric cases: override one direction of one link, after tier overrides.
    directed: tuple[DirectedOverride, ...] = ()

    def params_for(self, tier: str, src: str = "", dst: str = "") -> LinkParams:
        """Parameters of the `src`->`dst` direction of a link in `tier`."""
        override = self.tiers.get(tier)  # type: ignore[attr-defined]
        params = override.apply(self.link) if override else self.link
        for d in self.directed:
            if (d.src, d.dst) == (src, dst):
                params = d.apply(params)
        return params

    def link_sections(self) -> dict[str, LinkOverride | LinkParams]:
        """Every place link parameters are set, by key path (for error messages)."""
        sections: dict[str, LinkOverride | LinkParams] = {"topology.link": self.link}
        sections.update({f"topology.tiers.{t}": o for t, o in self.tiers.items()})  # type: ignore[attr-defined]
        sections.update({f"topology.directed.{i}": d for i, d in enumerate(self.directed)})
        return sections


class FatTreeSpec(_TopologyBase):
    """Al-Fares k-ary fat-tree: k pods, (k/2)^2 cores, k^3/4 hosts."""

    kind: Literal["fat-tree"] = "fat-tree"
    k: Int = Field(4, ge=2, le=16)
    tiers: dict[Literal["host", "edge", "core"], LinkOverride] = {}

    @field_validator("k")
    @classmethod
    def _even(cls, k: int) -> int:
        if k % 2:
            raise ValueError("expected an even integer between 2 and 16")
        return k


class LeafSpineSpec(_TopologyBase):
    """Two-tier Clos: every leaf connects to every spine."""

    kind: Literal["leaf-spine"]
    spines: Int = Field(2, ge=1, le=16)
    leaves: Int = Field(4, ge=1, le=32)
    hosts_per_leaf: Int = Field(4, ge=1, le=32)
    tiers: dict[Literal["host", "fabric"], LinkOverride] = {}


class DumbbellSpec(_TopologyBase):
    """Two switches joined by one bottleneck link, hosts on either side."""

    kind: Literal["dumbbell"]
    hosts_per_side: Int = Field(2, ge=1, le=64)
    tiers: dict[Literal["host", "bottleneck"], LinkOverride] = {}


TopologySpec = Annotated[
    Union[FatTreeSpec, LeafSpineSpec, DumbbellSpec], Field(discriminator="kind")
]


# ------------------------------------------------------------------ network, ctrl


# HTB's token bucket holds this many ms of each link's rate (see testbed.network.tc).
DEFAULT_SHAPER_BURST_MS = 2.0


class NetworkSpec(Frozen):
    """How the emulated network is realised on this machine."""

    datapath: Literal["auto", "user", "kernel"] = "auto"
    # How the userspace datapath reads switch ports (testbed.network.plane): AF_PACKET
    # sockets, or AF_XDP sockets with the links queued on wire ends. auto: afxdp where
    # this Open vSwitch offers it and its pinned memory fits, else packet.
    ports: Literal["auto", "packet", "afxdp"] = "auto"
    loss_backend: Literal["auto", "netem", "nftables"] = "auto"
    # The bucket must outlast the machine's longest usual delay in dequeuing, or the
    # link loses rate; deeper buckets let longer line-rate bursts through after idle.
    shaper_burst_ms: Float = Field(DEFAULT_SHAPER_BURST_MS, gt=0, le=100)
    # Switch ports get controller.priority_classes bands (each with its share of
    # queue_pkts) when the controller prioritizes (auto), or always: the control arm
    # of a prioritization study, the same partitioned buffers with nothing marked.
    priority_bands: Literal["auto", "always"] = "auto"


class ControllerSpec(Frozen):
    """Routing and prioritization policy of the OpenFlow controller."""

    routing: Literal["two-level", "ecmp"] = "two-level"
    # MLNET traffic management: which priority class each job's flows get.
    priority: Literal["none", "fixed", "smallest-first", "las"] = "none"
    # fixed: the classes come from jobs[].priority (spec), or from a permutation of the
    # jobs drawn with the run's seed (random: MLNET's "random priorities", a new draw
    # per repeat of a study), spread over the classes as smallest-first spreads sizes.
    priority_order: Literal["spec", "random"] = "spec"
    priority_classes: Int = Field(4, ge=2, le=8)
    poll_ms: Int = Field(500, ge=50, le=60_000)  # las: how often byte counters are read
    # las: a job moves to class i+1 once it has sent this many MB; default 2, 20, 200...
    las_thresholds_mb: tuple[Annotated[float, Strict(), Field(gt=0)], ...] | None = None
    # After the controller dies (a `controller: kill` fault), start a new one on the same
    # port; switches reconnect to it and it programs them from scratch.
    restart: Bool = False

    @field_validator("priority_order")
    @classmethod
    def _order(cls, order: str, info: ValidationInfo):
        if order == "random" and info.data.get("priority") != "fixed":
            raise ValueError("expected spec unless controller.priority is fixed")
        return order

    @field_validator("las_thresholds_mb")
    @classmethod
    def _thresholds(cls, t, info: ValidationInfo):
        classes = info.data.get("priority_classes", 4)
        if t is not None and (len(t) != classes - 1 or list(t) != sorted(set(t))):
            raise ValueError(f"expected {classes - 1} increasing sizes, one per demotion")
        return t

    def thresholds_bytes(self) -> list[int]:
        """las demotion points in bytes."""
        mb = self.las_thresholds_mb or tuple(2 * 10**i for i in range(self.priority_classes - 1))
        return [int(m * 1e6) for m in mb]


class ResultsSpec(Frozen):
    """What the run records besides the training CSVs."""

    sample_s: Float = Field(1.0, gt=0, le=60)


# ----------------------------------------------------------------------- training


class MlpSpec(Frozen):
    """Fully connected network; `hidden` lists the hidden layer widths."""

    name: Literal["mlp"] = "mlp"
    hidden: tuple[Annotated[int, Strict(), Field(ge=1, le=65_536)], ...] = (64,)


class CnnSpec(Frozen):
    """Small convolutional network: conv layers with `channels`, then a linear head."""

    name: Literal["cnn"]
    channels: tuple[Annotated[int, Strict(), Field(ge=1, le=1024)], ...] = (16, 32)


class MfSpec(Frozen):
    """Matrix factorization: user and item embeddings of width `rank`, plus biases."""

    name: Literal["mf"]
    rank: Int = Field(16, ge=1, le=4096)


class LstmSpec(Frozen):
    """Token embedding, one LSTM layer of `hidden` units, linear classifier."""

    name: Literal["lstm"]
    embed: Int = Field(16, ge=1, le=4096)
    hidden: Int = Field(64, ge=1, le=8192)


ModelSpec = Annotated[Union[MlpSpec, CnnSpec, MfSpec, LstmSpec], Field(discriminator="name")]

# Which dataset each model trains on (the APNet workload types: MLP, CNN, MF, RNN).
# Aggregation trees count per gradient entry how many workers it sums, in one byte
# (testbed.training.tree): a job with aggregation has at most this many workers.
MAX_TREE_COUNT = 127

MODEL_DATASETS = {
    "mlp": ("digits",),
    "cnn": ("digits",),
    "mf": ("ratings",),
    "lstm": ("sequences",),
}


class _TransportBase(Frozen):
    # APNet §2.2: drop this fraction of gradient entries at the application before
    # sending, to profile how much loss a model tolerates.
    drop_fraction: Float = Field(0.0, ge=0, lt=1)
    # What a receiver does with entries that did not arrive (or were dropped):
    # zero = leave them out of the average (per-entry counts); stale = reuse the
    # receiver's previous value.
    fill: Literal["zero", "stale"] = "zero"

    @property
    def loses_entries(self) -> bool:
        """Whether received messages may miss entries (the sync layer must cope)."""
        return False


class _ChannelTransport(_TransportBase):
    # Lose this fraction of every received message's packets (362 entries each), both
    # directions, never resent: what blt at loss_bound = p can hand the sync layer
    # (testbed.transports.dropping); `testbed profile` sweeps it.
    drop_packets: Float = Field(0.0, ge=0, lt=1)
    # Where those packets go missing: `receiver` (sent, then lost: what blt's losses look
    # like) or `sender` (never sent: the application sends a reduced message, APNet's
    # Fig. 3a "TCP with the same fraction dropped"; sync ps without aggregation only).
    drop_at: Literal["receiver", "sender"] = "receiver"

    @property
    def loses_entries(self) -> bool:
        return self.drop_packets > 0


class TcpSpec(_ChannelTransport):
    """Reliable baseline transport over the kernel's TCP."""

    kind: Literal["tcp"] = "tcp"
    # Set explicitly on every socket: this kernel defaults to bbr, which hides
    # random loss; cubic is Linux's usual default.
    congestion_control: Annotated[str, Strict(), Field(pattern=r"^[a-z0-9_]+$")] = "cubic"
    # fair-share: cap each connection's sending rate (SO_MAX_PACING_RATE, the kernel's
    # TCP pacing) at the share blt would pace the same channel at: the control arm
    # that separates blt's loss tolerance from its pacing (configs/blt_vs_tcp.yaml).
    pacing: Literal["none", "fair-share"] = "none"


class BltSpec(_ChannelTransport):
    """Bounded-loss-tolerant transport (APNet'19): UDP data, TCP control."""

    kind: Literal["blt"]
    loss_bound: Float = Field(0.1, ge=0, lt=1)
    # When a message is complete (testbed.transports.blt): `end` once every packet was
    # sent and 1 - loss_bound arrived; `early` (the paper's) as soon as 1 - loss_bound
    # arrived, never sending the rest.
    completion: Literal["end", "early"] = "end"
    rate_mbps: Float | None = Field(None, gt=0, le=10_000)  # default: the host link's rate
    # AIMD: a first pass losing more than this share of its packets halves the rate. Its
    # own key, not a multiple of loss_bound, so that arms differing in loss_bound pace
    # alike (with 2 x loss_bound, a reliable arm halved at every lost packet).
    congestion_loss: Float = Field(0.2, gt=0, le=1)
    congestion_control: Literal["cubic"] = "cubic"  # of the control connection

    @property
    def loses_entries(self) -> bool:
        return self.loss_bound > 0 or self.drop_packets > 0


class GlooSpec(_TransportBase):
    """torch.distributed allreduce over gloo (its own TCP connections)."""

    kind: Literal["gloo"]
    congestion_control: Literal["cubic"] = "cubic"  # not settable through gloo


TransportSpec = Annotated[Union[TcpSpec, BltSpec, GlooSpec], Field(discriminator="kind")]


def _named(value: object, key: str) -> object:
    """Let `model: mlp` stand for `model: {name: mlp}` (and likewise for transports)."""
    return {key: value} if isinstance(value, str) else value


class FanIn(Frozen):
    """`aggregation: {fanin: d}`: a d-ary aggregation tree per server (MLNET §3.1)."""

    fanin: Int


# MLNET's aggregation trees for sync: ps (testbed.jobs.trees): none = every worker
# talks to every server; rack = one aggregator per rack (edge switch / leaf);
# binary = in-degree 2; {fanin: d} = in-degree d.
def _aggregation_word(value: object) -> object:
    # Without this, pydantic reports a bad word against the FanIn member of the union.
    if isinstance(value, str) and value not in ("none", "rack", "binary"):
        raise ValueError("expected 'none', 'rack' or 'binary', or {fanin: D}")
    return value


Aggregation = Annotated[
    Literal["none", "rack", "binary"] | FanIn, BeforeValidator(_aggregation_word)
]


def _argv(value: object) -> object:
    """`command: "python train.py --x"` is split like a shell would, but none runs it."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"expected a command line shlex can split ({exc})") from None
    return value


Argv = Annotated[
    tuple[Annotated[str, Strict(), Field(min_length=1)], ...],
    BeforeValidator(_argv),
    Field(min_length=1),
    # What a spec may write: one command line, or its argv as a list.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]
EnvName = Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]
# Keys a command job may not set: they configure the built-in training processes.
BUILTIN_ONLY = (
    "model", "dataset", "servers", "sync", "transport", "aggregation",
    "iterations", "batch_size", "lr", "momentum", "eval_every", "compute_ms",
    "target_accuracy", "loss_bound",
)  # fmt: skip


DEFAULT_WORKER_TIMEOUT_S = 10.0
Millis = Annotated[float, Strict(), Field(gt=0, le=600_000)]


def _ms_range(value: object) -> object:
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] > value[1]:
        raise ValueError("expected [low, high] with low <= high")
    return value


ComputeMs = Annotated[Millis | tuple[Millis, Millis], AfterValidator(_ms_range)]


def _job_bound(transport: object, bound: object) -> object:
    """A blt transport without its own loss_bound takes the job's (see JobSpec)."""
    if bound is None or not isinstance(transport, dict) or transport.get("kind") != "blt":
        return transport
    own = transport.get("loss_bound", bound)
    if own != bound:
        raise ValueError(f"jobs[].loss_bound {bound} and transport.loss_bound {own} differ: "
                         "expected one of them, or the same value")  # fmt: skip
    return {**transport, "loss_bound": bound}


class JobSpec(Frozen):
    """One distributed training job: a built-in model, or your own `command`."""

    name: Name
    # Your program instead of a built-in model, run once per host with torchrun's
    # environment (testbed.jobs.command); {python} is the project's interpreter.
    command: Argv | None = None
    env: dict[EnvName, Str] = {}  # command jobs: added to the process environment
    workdir: Str | None = None  # command jobs; relative to the spec file's directory
    timeout_s: Float | None = Field(None, gt=0, le=7 * 86_400)  # then the job is `timeout`
    model: ModelSpec = MlpSpec()
    dataset: Literal["digits", "ratings", "sequences"] = "digits"  # default: the model's
    workers: Int = Field(4, ge=1, le=1024)
    servers: Int = Field(1, ge=0, le=64)  # default: 1 for ps, 0 for allreduce
    placement: Literal["spread", "pack", "rack-local"] | tuple[Name, ...] = "spread"
    sync: Literal["ps", "allreduce"] = "ps"
    aggregation: Aggregation = "none"
    transport: TransportSpec = TcpSpec()
    iterations: Int = Field(100, ge=1, le=1_000_000)
    batch_size: Int = Field(32, ge=1, le=65_536)
    lr: Float = Field(0.1, gt=0, le=100)
    momentum: Float = Field(0.0, ge=0, lt=1)
    eval_every: Int = Field(10, ge=1)
    # jobs.csv's tta_s and iterations_to_target: when a test accuracy first reached this
    # (evaluated every eval_every iterations, so set that small enough to resolve it).
    target_accuracy: Float | None = Field(None, gt=0, le=1)
    # The fraction of gradient entries the model tolerates losing (APNet's Table 3 gives
    # one per model). A blt transport without a loss_bound of its own takes this one, so
    # a study can vary the model and the transport on separate axes; tcp and gloo never
    # lose entries and leave it unused.
    loss_bound: Float | None = Field(None, ge=0, lt=1)
    # Each iteration's compute phase takes this long (the real gradient is computed,
    # then the worker waits out the rest), so a study sets its compute:communication
    # ratio on purpose, whatever the shared CPU does; [lo, hi]: each worker draws its
    # own, uniformly, from the run's seed (MLNET's workers ran at 100-200 MB/s).
    compute_ms: ComputeMs | None = None
    start_s: Float = Field(0.0, ge=0, le=86_400)  # offset from "network ready"
    priority: Int | None = Field(None, ge=0, le=7)  # class under controller.priority: fixed
    # A dead worker or server: fail the job at once, or (sync ps) go on without the worker.
    on_failure: Literal["fail", "continue"] = "fail"
    # on_failure continue: how long a server waits for a silent worker before dropping it
    # (default DEFAULT_WORKER_TIMEOUT_S). A worker that dies is dropped at once.
    worker_timeout_s: Float | None = Field(None, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        command = data.get("command") is not None
        if "model" in data or not command:  # a command job has no model unless one is given
            data["model"] = _named(data.get("model", "mlp"), "name")
        if "transport" in data:
            data["transport"] = _named(data["transport"], "kind")
            if isinstance(data["transport"], dict) and "kind" not in data["transport"]:
                data["transport"] = {**data["transport"], "kind": "tcp"}  # the default
            data["transport"] = _job_bound(data["transport"], data.get("loss_bound"))
        if command:
            data.setdefault("servers", 0)  # the rules reject every built-in key given
            return data
        model = data["model"].get("name") if isinstance(data["model"], dict) else None
        if "dataset" not in data and isinstance(model, str) and model in MODEL_DATASETS:
            data["dataset"] = MODEL_DATASETS[model][0]
        if "servers" not in data and data.get("sync") == "allreduce":
            data["servers"] = 0
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """A command job's resolved spec leaves out the built-in keys it cannot have,
        so that it validates again as written (spec.yaml of a run)."""
        data = handler(self)
        if self.command is None:
            return data
        return {k: v for k, v in data.items() if k not in BUILTIN_ONLY}

    @property
    def is_command(self) -> bool:
        """Whether this job runs the user's program rather than a built-in model."""
        return self.command is not None

    @property
    def fanin(self) -> int | None:
        """In-degree of the aggregation trees (binary: 2), None for none and rack."""
        if self.aggregation == "binary":
            return 2
        return getattr(self.aggregation, "fanin", None)

    @property
    def aggregation_name(self) -> str:
        """none | rack | binary | fanin-D, as jobs.csv records it."""
        a = self.aggregation
        return a if isinstance(a, str) else f"fanin-{a.fanin}"

    @property
    def roles(self) -> int:
        """Hosts this job occupies (one process per host role)."""
        return self.workers + self.servers


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
    """One iperf3 client -> server pair (testbed.traffic.iperf)."""

    kind: Literal["iperf3"]
    src: Name
    dst: Name
    proto: Literal["tcp", "udp"] = "tcp"
    rate_mbps: Float | None = Field(None, gt=0, le=10_000)  # default: tcp unlimited, udp 1
    parallel: Int = Field(1, ge=1, le=16)


class FlowsTraffic(_TrafficBase):
    """Poisson flow arrivals between random host pairs at a fraction of the hosts'
    access bandwidth, sizes from an empirical CDF (testbed.traffic.flows)."""

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
ServerName = Annotated[
    str, Strict(), Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", min_length=1, max_length=253)
]


class ClusterSpec(Frozen):
    """The servers to spread the network over with Mininet Cluster Edition.

    `placement` picks which server holds each node (`testbed.network.partition`):
    `pod` (the default) gives each server whole fat-tree pods, so only
    aggregation-core links cross servers, the fewest of any placement that keeps pods
    whole; `switchbin` and `roundrobin` are Mininet's own placers. `tunnel` is how a
    cross-server link is carried: `gre` (gretap, MTU 1450) or `ssh` (an ssh
    Ethernet tunnel per link, encrypted and slower). The first server runs the
    controller and the harness.
    """

    servers: tuple[ServerName, ...] = Field(min_length=2)
    placement: Literal["pod", "switchbin", "roundrobin"] = "pod"
    tunnel: Literal["gre", "ssh"] = "gre"


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
