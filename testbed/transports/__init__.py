"""Transport registry: spec `jobs[].transport.kind` -> `Transport` implementation.

gloo is not a `Transport`: it brings its own collective (see testbed.training.gloo).
"""

from __future__ import annotations

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.blt import BltTransport
from testbed.transports.dropping import PacketDropTransport, ReducedSendTransport
from testbed.transports.tcp import TcpTransport

TRANSPORTS: dict[str, type[Transport]] = {
    TcpTransport.name: TcpTransport,
    BltTransport.name: BltTransport,
}


def make_transport(spec, link_mbps: float = 100.0, seed: int = 0) -> Transport:
    """The transport for a validated `jobs[].transport` section.

    `link_mbps` is the host link rate, blt's default sending rate. With
    `drop_packets`, its channels lose packets on purpose (`testbed.transports.dropping`),
    drawn from `seed` (the role's), or with `drop_at: sender` never send them.
    """
    if spec.kind == "blt":
        transport: Transport = BltTransport(spec, default_mbps=link_mbps)
    else:
        transport = TRANSPORTS[spec.kind](spec)
    if spec.drop_packets and spec.drop_at == "sender":
        transport = ReducedSendTransport(transport, spec.drop_packets)
    elif spec.drop_packets:
        transport = PacketDropTransport(transport, spec.drop_packets, seed)
    return transport


__all__ = ["Channel", "Listener", "MessageStats", "TRANSPORTS", "Transport", "make_transport"]
