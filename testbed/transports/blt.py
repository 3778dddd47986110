"""Bounded-loss-tolerant transport (Xia et al., APNet'19): stop waiting once enough of
a message has arrived.

Per peer pair there is a TCP control connection (reliable, ordered) and a UDP socket
for data. One message, sender -> receiver:

1. BEGIN (control): message id, entry count, send time.
2. Every data packet once (UDP, paced at the channel's rate). A packet carries the
   message id and the index range of the whole float32 entries it holds (no float is
   split; a datagram fits a 1500-byte MTU).
3. END (control), the sender's probe: "all sent, retransmitted N bytes so far".
4. The receiver drains its UDP socket and counts delivered entries. If the delivered
   fraction reaches ``1 - loss_bound`` it answers STOP and the message is complete;
   otherwise it answers NACK with a bitmap of missing packets, the sender resends
   those and probes again (step 3), until the fraction is reached.

Missing entries are left untouched in the receiver's buffer and reported in the
`MessageStats.mask`; the sync layer applies the job's fill policy.

Congestion response (the paper designs none): each channel is paced at a rate the
sync layer sets, by default the fair share of the slower of the sender's uplink and
the receiver's downlink given how many messages each carries at once (an incast of
W workers gets 1/W each); pacing counts Ethernet/IP/UDP headers too. On top, a
per-channel AIMD: when a message's first pass loses more than twice `loss_bound` —
more than the random loss the job expects, so most likely congestion — the rate
halves (down to 1/16 of the share); otherwise it grows by a tenth of the share, up
to the share. (Halving at the bound itself made 10% random loss with a 0.1 bound
halve every other message.)
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable

import numpy as np

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.tcp import HELLO, MAGIC, _recv_exact, connect_with_retry

# Data packet: message id, packet index, first entry, entry count (+ 2 pad bytes).
DATA = struct.Struct("!IIIH2x")
MTU = 1500
ENTRIES_PER_PACKET = (MTU - 20 - 8 - DATA.size) // 4  # IPv4 + UDP headers: 364 floats
# Control message: type, message id, a 64-bit value, a timestamp.
CONTROL = struct.Struct("!BIQd")
WIRE_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4, UDP headers: what the link really carries
CONGESTION_FACTOR = 2.0  # first-pass loss beyond this many loss bounds halves the rate
BEGIN, END, STOP, NACK, PORT = range(1, 6)
IO_TIMEOUT_S = 300.0
MIN_RATE_FRACTION = 1 / 16
INCREASE_FRACTION = 0.1

# (message id, packet index, attempt) -> drop it? For deterministic unit tests only.
DropRule = Callable[[int, int, int], bool]


def packet_count(entries: int) -> int:
    """Packets needed for a message of `entries` float32 entries."""
    return max(1, -(-entries // ENTRIES_PER_PACKET))


class Pacer:
    """Sleeps so that bytes leave at no more than `rate_mbps` (token bucket, 1 ms burst)."""

    def __init__(self, rate_mbps: float):
        self.rate_mbps = rate_mbps
        self.next_time = time.perf_counter()

    def wait(self, nbytes: int) -> None:
        now = time.perf_counter()
        self.next_time = max(self.next_time, now - 0.001)
        self.next_time += nbytes * 8 / (self.rate_mbps * 1e6)
        if self.next_time > now:
            time.sleep(self.next_time - now)


class BltChannel(Channel):
    """One peer pair: a TCP control socket and a connected UDP socket."""

    def __init__(self, ctl: socket.socket, udp: socket.socket, peer: int, loss_bound: float,
                 share_mbps: float, drop: DropRule | None = None):
        ctl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctl.settimeout(IO_TIMEOUT_S)
        self.ctl, self.udp, self.peer = ctl, udp, peer
        self.loss_bound = loss_bound
        self.share_mbps = share_mbps
        self.pacer = Pacer(share_mbps)
        self.drop = drop
        self.packet = bytearray(DATA.size + 4 * ENTRIES_PER_PACKET)

    def set_share(self, mbps: float) -> None:
        """The fair-share rate of this channel (also the AIMD ceiling)."""
        self.share_mbps = mbps
        self.pacer.rate_mbps = mbps

    # ------------------------------------------------------------------ sending

    def send(self, msg_id: int, data: np.ndarray) -> None:
        payload = np.ascontiguousarray(data, dtype=np.float32)
        packets = packet_count(len(payload))
        self._control(BEGIN, msg_id, len(payload), time.time())
        missing = list(range(packets))
        resent = attempt = 0
        while True:
            for seq in missing:
                if self.drop is None or not self.drop(msg_id, seq, attempt):
                    self._send_packet(msg_id, seq, payload)
                else:  # injected loss: pace as if sent, so timing stays comparable
                    self.pacer.wait(WIRE_OVERHEAD + DATA.size + 4 * _count(seq, len(payload)))
            if attempt:
                resent += sum(4 * _count(seq, len(payload)) for seq in missing)
            self._control(END, msg_id, resent, time.time())
            kind, got_id, value, _ = self._read_control()
            if got_id != msg_id or kind not in (STOP, NACK):
                raise ConnectionError(f"peer {self.peer}: unexpected control {kind} for {got_id}")
            missing = _missing(_recv_exact(self.ctl, value), packets) if kind == NACK else []
            if attempt == 0:
                self._after_first_pass(len(missing), packets)
            if kind == STOP:
                return
            attempt += 1

    def _send_packet(self, msg_id: int, seq: int, payload: np.ndarray) -> None:
        first = seq * ENTRIES_PER_PACKET
        count = _count(seq, len(payload))
        DATA.pack_into(self.packet, 0, msg_id, seq, first, count)
        body = memoryview(payload[first : first + count]).cast("B")
        self.packet[DATA.size : DATA.size + body.nbytes] = body
        size = DATA.size + body.nbytes
        self.pacer.wait(WIRE_OVERHEAD + size)
        try:
            self.udp.send(memoryview(self.packet)[:size])
        except (BlockingIOError, ConnectionRefusedError):
            pass  # a full socket buffer or an ICMP error: the packet is lost, as on a wire

    def _after_first_pass(self, lost: int, packets: int) -> None:
        """AIMD on the first pass of each message (see the module docstring)."""
        if lost > CONGESTION_FACTOR * self.loss_bound * packets:
            self.pacer.rate_mbps = max(self.share_mbps * MIN_RATE_FRACTION,
                                       self.pacer.rate_mbps / 2)
        else:
            self.pacer.rate_mbps = min(self.share_mbps,
                                       self.pacer.rate_mbps + INCREASE_FRACTION * self.share_mbps)

    # ------------------------------------------------------------------ receiving

    def recv(self, msg_id: int, out: np.ndarray) -> MessageStats:
        entries = len(out)
        packets = packet_count(entries)
        have = bytearray(packets)
        view = memoryview(out).cast("B")
        sent_at = None
        while True:
            readable, _, _ = select.select([self.ctl, self.udp], [], [], IO_TIMEOUT_S)
            if not readable:
                raise TimeoutError(f"peer {self.peer}: nothing for {IO_TIMEOUT_S:.0f} s")
            if self.udp in readable:
                self._drain(msg_id, have, view, entries)
            if self.ctl in readable:
                kind, got_id, value, stamp = self._read_control()
                if got_id != msg_id:
                    raise ConnectionError(f"peer {self.peer}: expected message {msg_id}, got {got_id}")
                if kind == BEGIN:
                    sent_at = stamp
                    if value != entries:
                        raise ConnectionError(f"peer {self.peer}: {value} entries, expected {entries}")
                    continue
                self._drain(msg_id, have, view, entries)  # packets sent before END
                mask = _entry_mask(have, entries)
                delivered = float(mask.mean())
                if delivered >= 1 - self.loss_bound:
                    self._control(STOP, msg_id, 0, time.time())
                    return MessageStats(msg_id, out.nbytes, time.time() - (sent_at or stamp),
                                        delivered, int(value), None if mask.all() else mask)
                bitmap = bytes(np.packbits(np.frombuffer(have, np.uint8) == 0))
                self._control(NACK, msg_id, len(bitmap), time.time())
                self.ctl.sendall(bitmap)

    def _drain(self, msg_id: int, have: bytearray, view: memoryview, entries: int) -> None:
        """Copy every queued datagram of message `msg_id` into place; ignore stale ones."""
        self.udp.setblocking(False)
        try:
            while True:
                try:
                    size = self.udp.recv_into(self.packet)
                except BlockingIOError:
                    return
                if size < DATA.size:
                    continue
                got_id, seq, first, count = DATA.unpack_from(self.packet)
                if got_id != msg_id or first + count > entries or size != DATA.size + 4 * count:
                    continue  # a late retransmission of an earlier message
                view[4 * first : 4 * (first + count)] = memoryview(self.packet)[DATA.size:size]
                have[seq] = 1
        finally:
            self.udp.setblocking(True)

    # ------------------------------------------------------------------ control

    def _control(self, kind: int, msg_id: int, value: int, stamp: float) -> None:
        self.ctl.sendall(CONTROL.pack(kind, msg_id, value, stamp))

    def _read_control(self) -> tuple[int, int, int, float]:
        return CONTROL.unpack(_recv_exact(self.ctl, CONTROL.size))

    def close(self) -> None:
        self.ctl.close()
        self.udp.close()


def _count(seq: int, entries: int) -> int:
    return min(ENTRIES_PER_PACKET, entries - seq * ENTRIES_PER_PACKET)


def _missing(bitmap: bytes, packets: int) -> list[int]:
    return np.flatnonzero(np.unpackbits(np.frombuffer(bitmap, np.uint8))[:packets]).tolist()


def _entry_mask(have: bytearray, entries: int) -> np.ndarray:
    """Per-entry delivered flags from per-packet flags."""
    return np.repeat(np.frombuffer(have, np.uint8).astype(bool), ENTRIES_PER_PACKET)[:entries]


def _udp_pair(ctl: socket.socket, local_ip: str) -> socket.socket:
    """A UDP socket on `local_ip`, connected to the peer's, ports swapped over `ctl`."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    udp.bind((local_ip, 0))
    ctl.sendall(CONTROL.pack(PORT, 0, udp.getsockname()[1], 0.0))
    kind, _, port, _ = CONTROL.unpack(_recv_exact(ctl, CONTROL.size))
    if kind != PORT:
        raise ConnectionError("peer did not send its UDP port")
    udp.connect((ctl.getpeername()[0], port))
    return udp


class BltListener(Listener):
    def __init__(self, transport: BltTransport, ip: str, port: int):
        self.transport = transport
        self.ip = ip
        self.sock = socket.create_server((ip, port), backlog=128)

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
            channels[rank] = self.transport.channel(conn, self.ip, rank)
        return channels

    def close(self) -> None:
        self.sock.close()


class BltTransport(Transport):
    """`transport: {kind: blt, loss_bound, fill, rate_mbps}`."""

    name = "blt"

    def __init__(self, spec, default_mbps: float = 100.0, drop: DropRule | None = None):
        self.loss_bound = spec.loss_bound
        self.rate_mbps = spec.rate_mbps or default_mbps
        self.drop = drop

    def channel(self, ctl: socket.socket, local_ip: str, peer: int) -> BltChannel:
        return BltChannel(ctl, _udp_pair(ctl, local_ip), peer, self.loss_bound, self.rate_mbps,
                          self.drop)

    def listen(self, ip: str, port: int) -> Listener:
        return BltListener(self, ip, port)

    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        ctl = connect_with_retry(ip, port, timeout_s)
        ctl.sendall(HELLO.pack(MAGIC, rank))
        return self.channel(ctl, ctl.getsockname()[0], 0)
