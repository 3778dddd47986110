"""Spec sections of a job: models, transports, aggregation, a job's own keys."""

from __future__ import annotations

import shlex
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from testbed.spec.types import Float, Frozen, Int, Name, Str

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
