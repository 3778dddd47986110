"""Topology registry: spec `topology.kind` -> its graph class (pure data)."""

from __future__ import annotations

from topologies.base import Direction, GraphTopo, HostInfo, LinkInfo, SwitchInfo
from topologies.dumbbell import Dumbbell
from topologies.fattree import FatTree
from topologies.leafspine import LeafSpine

TOPOLOGIES: dict[str, type[GraphTopo]] = {
    FatTree.kind: FatTree,
    LeafSpine.kind: LeafSpine,
    Dumbbell.kind: Dumbbell,
}


def build_topology(spec) -> GraphTopo:
    """The graph of a validated `topology` section (pure data, no side effects)."""
    return TOPOLOGIES[spec.kind](spec)


__all__ = [
    "Direction",
    "GraphTopo",
    "HostInfo",
    "LinkInfo",
    "SwitchInfo",
    "TOPOLOGIES",
    "build_topology",
]
