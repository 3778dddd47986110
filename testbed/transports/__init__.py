"""Transport registry: spec `jobs[].transport.kind` -> `Transport` implementation."""

from __future__ import annotations

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.tcp import TcpTransport

TRANSPORTS: dict[str, type[Transport]] = {TcpTransport.name: TcpTransport}


def make_transport(spec) -> Transport:
    """The transport for a validated `jobs[].transport` section."""
    return TRANSPORTS[spec.kind](spec)


__all__ = ["Channel", "Listener", "MessageStats", "TRANSPORTS", "Transport", "make_transport"]
