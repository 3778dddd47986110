"""Reliable baseline: each message is a header plus the raw float32 payload on one
TCP connection per peer pair.

The congestion control is set on every socket (TCP_CONGESTION), not left to the
namespace default: this kernel defaults to bbr, which largely ignores random loss,
and a non-initial namespace may not select a "restricted" algorithm (cubic here)
as its default — a socket owned by root may.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable

import numpy as np

from testbed.transports.base import Channel, Listener, MessageStats, Transport

# magic, message id, payload bytes, sender's wall-clock send time (hosts share a clock)
HEADER = struct.Struct("!4sIQd")
MAGIC = b"MLNT"
HELLO = struct.Struct("!4sI")  # magic, rank of the connecting peer
IO_TIMEOUT_S = 300.0  # a silent peer for this long means it died: fail, don't hang


class TcpChannel(Channel):
    """Length-prefixed messages over a connected TCP socket."""

    def __init__(
        self, sock: socket.socket, peer: int, congestion_control: str, paced: bool = False
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_congestion_control(sock, congestion_control)
        sock.settimeout(IO_TIMEOUT_S)
        self.sock = sock
        self.peer = peer
        self.paced = paced

    def set_share(self, mbps: float) -> None:
        """With `pacing: fair-share`, cap the sending rate at `mbps`. Since Linux 4.13
        TCP paces by itself when asked (no fq qdisc needed); the cap counts IP and TCP
        headers but not Ethernet's, so at equal numbers TCP carries ~1% more than blt,
        whose pacer counts Ethernet too."""
        if self.paced:
            rate = int(mbps * 1e6 / 8)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, rate)
            if self.sock.getsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE) != rate:
                raise OSError(f"the kernel did not take SO_MAX_PACING_RATE {rate}")

    def send(self, msg_id: int, data: np.ndarray) -> None:
        payload = memoryview(np.ascontiguousarray(data, dtype=np.float32)).cast("B")
        self.sock.sendall(HEADER.pack(MAGIC, msg_id, payload.nbytes, time.time()))
        self.sock.sendall(payload)

    def recv(self, msg_id: int, out: np.ndarray, reliable: bool = False) -> MessageStats:
        magic, got_id, nbytes, sent_at = HEADER.unpack(_recv_exact(self.sock, HEADER.size))
        if magic != MAGIC or got_id != msg_id or nbytes != out.nbytes:
            raise ConnectionError(
                f"peer {self.peer}: expected message {msg_id} of {out.nbytes} B, "
                f"got {got_id} of {nbytes} B"
            )
        _recv_into(self.sock, memoryview(out).cast("B"))
        return MessageStats(msg_id, nbytes, time.time() - sent_at)

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Shut down first: a close alone does not wake a thread blocked in recv."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class HelloListener(Listener):
    """Accepts TCP connections whose first bytes are HELLO(rank), and wraps each in the
    channel `make_channel(socket, rank)` builds (shared by tcp and blt)."""

    def __init__(self, ip: str, port: int, make_channel: Callable[[socket.socket, int], Channel]):
        self.sock = socket.create_server((ip, port), backlog=128)
        self.make_channel = make_channel

    def accept(self, peers: int, timeout_s: float) -> dict[int, Channel]:
        self.sock.settimeout(timeout_s)
        channels: dict[int, Channel] = {}
        while len(channels) < peers:
            conn, _ = self.sock.accept()
            conn.settimeout(timeout_s)
            magic, rank = HELLO.unpack(_recv_exact(conn, HELLO.size))
            if magic != MAGIC:
                conn.close()
                continue
            channels[rank] = self.make_channel(conn, rank)
        return channels

    def close(self) -> None:
        self.sock.close()


def dial(ip: str, port: int, rank: int, timeout_s: float) -> socket.socket:
    """Connect to a `HelloListener` and introduce ourselves as `rank`."""
    sock = connect_with_retry(ip, port, timeout_s)
    sock.sendall(HELLO.pack(MAGIC, rank))
    return sock


class TcpTransport(Transport):
    """`transport: tcp`."""

    name = "tcp"

    def __init__(self, spec):
        self.congestion_control = spec.congestion_control
        self.paced = spec.pacing == "fair-share"

    def listen(self, ip: str, port: int) -> Listener:
        return HelloListener(
            ip,
            port,
            lambda conn, rank: TcpChannel(conn, rank, self.congestion_control, self.paced),
        )

    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        sock = dial(ip, port, rank, timeout_s)
        return TcpChannel(sock, 0, self.congestion_control, self.paced)


def set_congestion_control(sock: socket.socket, algorithm: str) -> None:
    """Select `algorithm` for `sock` and check the kernel really uses it."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
    used = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    if used != algorithm:
        raise OSError(f"TCP congestion control {algorithm!r} requested, kernel uses {used!r}")


CONNECT_ATTEMPT_S = 5.0
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)  # Linux <asm/socket.h>


def connect_with_retry(ip: str, port: int, timeout_s: float) -> socket.socket:
    """Connect, retrying while the listener is still starting up.

    Each attempt may take CONNECT_ATTEMPT_S; the connected socket then gets the whole
    `timeout_s` for the handshake that follows (HELLO, blt's PORT exchange). A server
    sets its peers up one at a time, on a CPU busy with every other process's start-up
    and under loss, so that handshake may take longer than one attempt: with the
    attempt's 5 s left on the socket, a 12-worker blt job failed at start-up."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            sock = socket.create_connection((ip, port), timeout=min(CONNECT_ATTEMPT_S, timeout_s))
            sock.settimeout(timeout_s)
            return sock
        except OSError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    _recv_into(sock, memoryview(buf))
    return bytes(buf)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    while view.nbytes:
        got = sock.recv_into(view)
        if not got:
            raise ConnectionError("peer closed the connection mid-message")
        view = view[got:]
