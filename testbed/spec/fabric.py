"""Spec sections of the network: link parameters, topologies, the network's
emulation settings, the controller, results sampling and a cluster's servers."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import (
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from testbed.spec.types import Bool, Float, Frozen, Int, Name

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
