"""Transport registry: spec `jobs[].transport.kind` -> `Transport` implementation.

gloo is not a `Transport`: it brings its own collective (see testbed.training.gloo).
"""

from __future__ import annotations

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.blt import BltTransport
from testbed.transports.tcp import TcpTransport

TRANSPORTS: dict[str, type[Transport]] = {
    TcpTransport.name: TcpTransport,
    BltTransport.name: BltTransport,
}


def make_transport(spec, link_mbps: float = 100.0) -> Transport:
    """The transport for a validated `jobs[].transport` section.

    `link_mbps` is the host link rate, blt's default sending rate.
    """
    if spec.kind == "blt":
        return BltTransport(spec, default_mbps=link_mbps)
    return TRANSPORTS[spec.kind](spec)


__all__ = ["Channel", "Listener", "MessageStats", "TRANSPORTS", "Transport", "make_transport"]
