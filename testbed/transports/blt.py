"""Bounded-loss-tolerant transport (Xia et al., APNet'19): stop waiting once enough of
a message has arrived.

Per peer pair there is a TCP control connection (reliable, ordered) and a UDP socket
for data. One message, sender -> receiver:

1. Every data packet once (UDP, paced). A packet carries the message id, the
   index range of the whole float32 entries it holds (no float is split; a datagram
   fits a 1500-byte MTU) and the sender's start time.
2. END, the sender's probe: "attempt k sent; N bytes retransmitted so far".
3. The receiver drains its UDP socket and counts delivered entries. If the delivered
   fraction reaches ``1 - loss_bound`` it answers STOP and the message is complete;
   otherwise it answers NACK with a bitmap of missing packets, the sender resends
   those (attempt k+1) and probes again, until the fraction is reached.

When the receiver may answer STOP is the `completion` rule:

- ``end`` (the default): only in answer to an END, so every packet is sent at least
  once and nothing is missing unless it was lost. A NACK asks for every missing
  packet: a message that needs a second pass comes back whole.
- ``early`` (the paper's protocol): the moment the delivered entries reach
  ``1 - loss_bound``, whatever their order and before END if need be; the sender,
  which looks for a STOP between packets, sends nothing more of that message. Even
  without loss the last part of each message is never sent (its entries go to the
  fill policy), and a NACK asks only for as many missing packets as the bound needs,
  never for all of them. Late packets and ENDs of a completed message are ignored
  by the next one (they carry its id) and answered with the STOP again.

``end`` is the default because it loses nothing that the network did not lose: a
user who picks blt for its loss tolerance keeps exact messages on a clean path, and
the harness's earlier results keep their meaning. ``early`` trades a fixed fraction
of every message for time, which is the paper's experiment, so its configs say so.

Control messages travel twice: over the TCP connection (reliable) and as a UDP
datagram (fast). Whichever arrives first counts; the other is recognised by its
(message, attempt) and ignored. Without the UDP copy, a lost control segment costs
a TCP retransmission timeout (>= 200 ms) — exactly the tail this transport exists
to cut.

The TCP copy alone is not a fast enough fallback either: its retransmission timeout
grows from the RTTs TCP has seen, and while a dozen interpreters start on two cores
those reach seconds (a 3.8 s RTO measured at a 12-worker job's start). With a path
losing 17% (3% on each of 6 links), a lost UDP copy plus one or two lost TCP
segments stalled a job 22 s, and once, on a slower machine, past the 300 s timeout.
So the waiting sender also re-sends its END as a UDP datagram, after `PROBE_FIRST_S`
and then at doubling intervals up to `PROBE_MAX_S`. A receiver that sees an END it
has already answered answers it again over UDP: the last reply it sent is kept
(`answered`) and re-sent from whichever operation next reads the channel, including
after `recv` has returned.

Missing entries are left untouched in the receiver's buffer and reported in the
`MessageStats.mask`; the sync layer applies the job's fill policy.

The sender's side (pacing, passes, probes and the congestion response) is
`testbed.transports.blt_send.Sender`.
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import struct
import termios
import time
from collections.abc import Callable

import numpy as np

from testbed.transports.base import Channel, Listener, MessageStats, Transport
from testbed.transports.blt_send import Sender
from testbed.transports.blt_wire import (
    COMPLETIONS,
    CONTROL,
    DATA,
    END,
    ENTRIES_PER_PACKET,
    IO_TIMEOUT_S,
    KIND_DATA,
    LINGER_S,
    NACK,
    PORT,
    STOP,
    UDP_ROOM,
    Pacer,
    Reassembly,
    packet_count,
)
from testbed.transports.tcp import HelloListener, _recv_exact, dial

# The transport's public names (the wire format's among them, as its users know them).
__all__ = ["DATA", "ENTRIES_PER_PACKET", "KIND_DATA", "BltChannel", "BltTransport", "Pacer",
           "packet_count"]  # fmt: skip

# (message id, packet index, attempt) -> drop it? For deterministic unit tests only.
DropRule = Callable[[int, int, int], bool]


class BltChannel(Sender, Channel):
    """One peer pair: a TCP control socket and a connected UDP socket."""

    def __init__(
        self,
        ctl: socket.socket,
        udp: socket.socket,
        peer: int,
        loss_bound: float,
        share_mbps: float,
        drop: DropRule | None = None,
        congestion_loss: float = 0.2,
        completion: str = "end",
    ):
        if completion not in COMPLETIONS:
            raise ValueError(f"completion {completion!r}: expected one of {COMPLETIONS}")
        ctl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctl.settimeout(IO_TIMEOUT_S)
        self.ctl, self.udp, self.peer = ctl, udp, peer
        self.loss_bound = loss_bound
        self.congestion_loss = congestion_loss
        self.early_stop = completion == "early"
        self.share_mbps = share_mbps
        self.pacer = Pacer(share_mbps)
        self.drop = drop
        self.tx = bytearray(UDP_ROOM)
        self.rx = bytearray(65536)
        # Datagrams of the peer's next message (data, its END) that came during send().
        self.early: list[bytes] = []
        # The last STOP/NACK we sent, (message, attempt, datagram): re-sent when the
        # sender probes again with that END (our UDP copy of it was lost).
        self.answered: tuple[int, int, bytes] | None = None
        self.heard = time.monotonic()  # when either socket last had something for us
        self.window = [0, 0]  # first-pass packets (sent, lost) since the last AIMD step

    def recv(self, msg_id: int, out: np.ndarray, reliable: bool = False) -> MessageStats:
        order = self._send_order(msg_id, packet_count(len(out)), self.udp, sender=False)
        state = Reassembly(msg_id, out, order)
        enough = 1.0 if reliable else 1 - self.loss_bound
        early = self.early_stop and not reliable
        ends: list[tuple] = []
        for datagram in self.early:
            self._take(datagram, state, ends)
        self.early.clear()
        handled = -1  # highest attempt answered; the other copy of its END is ignored
        self.heard = time.monotonic()
        while True:
            if early and state.delivered >= enough:
                return self._stop_early(state, handled + 1)
            readable = self._wait() if not ends else []
            if self.udp in readable:
                ends += self._drain(state)
            if self.ctl in readable:
                end = self._read_end(msg_id)
                ends += [end] if end else []
            ends, pending = [], ends
            for att, entries, resent, start in sorted(pending):
                if att <= handled:  # a copy, or the sender probing: our reply was lost
                    self._answer_again(msg_id, att)
                    continue
                if entries != len(out):
                    raise ConnectionError(f"{self.label}: {entries} entries, expected {len(out)}")
                ends += self._drain(state)  # data sent before this END may still be queued
                handled = att
                state.resent_sent, state.resent_since = resent, 0
                if state.delivered >= enough:
                    covered, lost = len(state.have), state.missing_packets
                    self._reply(CONTROL.pack(STOP, msg_id, att, covered, lost, 0.0))
                    return state.stats(time.time() - start, resent)
                bitmap = state.missing_bitmap(state.needed(enough) if early else None)
                self._reply(
                    CONTROL.pack(NACK, msg_id, att, state.missing_packets, len(bitmap), 0.0)
                    + bitmap
                )
                state.nacked = True

    def _stop_early(self, state: Reassembly, att: int) -> MessageStats:
        """Complete a message before (or without) its END: enough of it is here."""
        covered, lost = state.gaps()
        self._reply(CONTROL.pack(STOP, state.msg_id, att, covered, lost, 0.0))
        # Resent bytes: all the sender had declared by its last END, and of the pass
        # cut short, what arrived (what is still in flight is not known here).
        fct = time.time() - state.start if state.start is not None else 0.0
        return state.stats(fct, state.resent_sent + state.resent_since)

    def _read_end(self, msg_id: int) -> tuple | None:
        """One control message from TCP: an END of `msg_id`, or None for a stale one
        (a late copy of a reply to our own sending, or of an END already answered)."""
        kind, got, att, entries, value, start = self._read_control()
        if kind == NACK:
            _recv_exact(self.ctl, value)  # skip its bitmap
        return (att, entries, value, start) if kind == END and got == msg_id else None

    def _drain(self, state: Reassembly) -> list[tuple]:
        """Take every queued datagram; return the END probes among them."""
        ends: list[tuple] = []
        self.udp.setblocking(False)
        try:
            while True:
                try:
                    size = self._recv_udp()
                except BlockingIOError:
                    return ends
                if size:
                    self._take(memoryview(self.rx)[:size], state, ends)
        finally:
            self.udp.setblocking(True)

    def _take(self, datagram, state: Reassembly, ends: list[tuple]) -> None:
        """One datagram while receiving: data into `state`, this message's END into
        `ends`; an END of a message we finished receiving is answered again."""
        if datagram[0] == KIND_DATA:
            state.take(datagram)
        elif len(datagram) >= CONTROL.size:
            kind, got, att, entries, value, start = CONTROL.unpack_from(datagram)
            if kind == END and got == state.msg_id:
                ends.append((att, entries, value, start))
            elif kind == END:  # probing for a message we finished receiving
                self._answer_again(got, att)

    # ------------------------------------------------------------------ plumbing

    def _wait(self, timeout_s: float = IO_TIMEOUT_S) -> list:
        """The readable sockets, or [] after `timeout_s`; TimeoutError once the peer
        has been silent for IO_TIMEOUT_S."""
        readable, _, _ = select.select([self.ctl, self.udp], [], [], timeout_s)
        now = time.monotonic()
        if readable:
            self.heard = now
        elif now - self.heard >= IO_TIMEOUT_S:
            raise TimeoutError(f"{self.label}: nothing for {IO_TIMEOUT_S:.0f} s")
        return readable

    @property
    def label(self) -> str:
        """The peer, for errors: its rank, and its address while the socket has one (a
        worker's channels all say rank 0, whichever server they reach)."""
        with contextlib.suppress(OSError):
            ip, port = self.ctl.getpeername()[:2]
            return f"peer {self.peer} ({ip}:{port})"
        return f"peer {self.peer}"

    def _reply(self, datagram: bytes) -> None:
        """Send a STOP/NACK and keep it for `_answer_again`."""
        _, msg_id, att, _, _, _ = CONTROL.unpack_from(datagram)
        self.answered = (msg_id, att, datagram)
        self._control(datagram[: CONTROL.size], datagram[CONTROL.size :])

    def _answer_again(self, msg_id: int, att: int) -> bool:
        """The sender probed with END (msg_id, att) again: re-send our reply to it, if
        it is the last one we sent (an older END is a stale copy: it was answered); a
        STOP answers every END of its message (an early one came before any END).
        Returns whether it was that one."""
        if self.answered is None or self.answered[0] != msg_id:
            return False
        if self.answered[1] != att and self.answered[2][0] != STOP:
            return False
        if len(self.answered[2]) <= UDP_ROOM:
            self._udp(self.answered[2])
        return True

    def _control(self, header: bytes, bitmap: bytes = b"") -> None:
        """Send a control message over TCP, and a copy over UDP when it fits."""
        self.ctl.sendall(header + bitmap)
        if len(header) + len(bitmap) <= UDP_ROOM:
            self._udp(header + bitmap)

    def _recv_udp(self) -> int:
        """One datagram into `rx`; its size, or 0 for a pending ICMP error.

        A peer that has finished and closed its UDP socket makes our last datagrams
        bounce as "port unreachable", which the next recv raises as
        ConnectionRefusedError. That is not data and not a failure: the control
        connection carries every reply too, and says when the peer is really gone."""
        try:
            return self.udp.recv_into(self.rx)
        except ConnectionRefusedError:
            return 0

    def _udp(self, datagram) -> None:
        try:
            self.udp.send(datagram)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # a full socket buffer or an ICMP error: the datagram is lost, as on a wire

    def _read_control(self) -> tuple[int, int, int, int, int, float]:
        return CONTROL.unpack(_recv_exact(self.ctl, CONTROL.size))

    def close(self) -> None:
        """Close without losing our last control message.

        The peer's TCP copies of control messages whose UDP copy came first are never
        read. Closing a TCP socket with unread data makes Linux send RST and discard
        what is not yet acknowledged: a last STOP whose UDP copy and first TCP segment
        were both lost never arrived, and with the RST lost too the peer waited for it
        until its 300 s timeout (the ring test under 5% loss, once in a CI run). So:
        discard what is unread, wait (at most `LINGER_S`) until the peer's kernel has
        acknowledged everything we sent, and discard again before closing. This waits
        on the peer's kernel only, never on its application, so channels closed one
        after another around a ring cannot wait on each other. While it waits (the TCP
        copy of our last reply is being retransmitted), a probe of the peer's for that
        reply is answered again over UDP, as `recv` would."""
        with contextlib.suppress(OSError):
            _discard_unread(self.ctl)
            deadline = time.monotonic() + LINGER_S
            while _unacknowledged(self.ctl) and time.monotonic() < deadline:
                self._answer_probes(0.005)
            _discard_unread(self.ctl)
        self.ctl.close()
        self.udp.close()

    def _answer_probes(self, wait_s: float) -> None:
        """Wait up to `wait_s` for datagrams; answer the ENDs among them again."""
        if not select.select([self.udp], [], [], wait_s)[0]:
            return
        size = self._recv_udp()
        if size >= CONTROL.size and self.rx[0] == END:
            self._answer_again(*CONTROL.unpack_from(self.rx)[1:3])

    def abort(self) -> None:
        """Shut the control connection down first: a thread blocked waiting on it
        wakes to its end-of-file."""
        with contextlib.suppress(OSError):
            self.ctl.shutdown(socket.SHUT_RDWR)
        self.close()


def _discard_unread(sock: socket.socket) -> None:
    """Read and drop whatever the socket holds now, without blocking (select with no
    wait: the control socket has a timeout, which makes even MSG_DONTWAIT wait)."""
    while select.select([sock], [], [], 0)[0]:
        if not sock.recv(65536):
            return  # the peer has closed


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes we sent that the peer has not acknowledged yet (Linux SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def _udp_pair(ctl: socket.socket, local_ip: str) -> socket.socket:
    """A UDP socket on `local_ip`, connected to the peer's, ports swapped over `ctl`."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    udp.bind((local_ip, 0))
    ctl.sendall(CONTROL.pack(PORT, 0, 0, 0, udp.getsockname()[1], 0.0))
    kind, _, _, _, port, _ = CONTROL.unpack(_recv_exact(ctl, CONTROL.size))
    if kind != PORT:
        raise ConnectionError("peer did not send its UDP port")
    udp.connect((ctl.getpeername()[0], port))
    return udp


class BltTransport(Transport):
    """`transport: {kind: blt, loss_bound, completion, fill, rate_mbps}`."""

    name = "blt"

    def __init__(self, spec, default_mbps: float = 100.0, drop: DropRule | None = None):
        self.loss_bound = spec.loss_bound
        self.completion = spec.completion
        self.congestion_loss = spec.congestion_loss
        self.rate_mbps = spec.rate_mbps or default_mbps
        self.drop = drop

    def channel(self, ctl: socket.socket, local_ip: str, peer: int) -> BltChannel:
        udp = _udp_pair(ctl, local_ip)
        return BltChannel(
            ctl, udp, peer, self.loss_bound, self.rate_mbps, self.drop, self.congestion_loss,
            self.completion,
        )  # fmt: skip

    def listen(self, ip: str, port: int) -> Listener:
        return HelloListener(ip, port, lambda conn, rank: self.channel(conn, ip, rank))

    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        ctl = dial(ip, port, rank, timeout_s)
        return self.channel(ctl, ctl.getsockname()[0], 0)
