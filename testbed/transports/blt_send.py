"""The sending half of a blt channel (`testbed.transports.blt` has the protocol).

Congestion response (the paper designs none): each channel is paced at a rate the
sync layer sets, by default the fair share of the slower of the sender's uplink and
the receiver's downlink given how many messages each carries at once (an incast of
W workers gets 1/W each); pacing counts Ethernet/IP/UDP headers too. On top, a
per-channel AIMD on what first passes lose. The receiver counts the packets missing
when it answers a first END, and says so in its answer whichever it is: a NACK or a
STOP (a first pass that lost no more than `loss_bound` is complete, yet its losses
may well be congestion). An early STOP covers the packets up to the highest one that
arrived, and counts as lost the gaps below it (the rest was never sent). The sender
adds first passes up until they hold at least `AIMD_WINDOW_PACKETS` packets (one
message, or several small ones), then decides: when more than `congestion_loss` of
them were lost (default 0.2) — more than the random loss a job is run with, so most
likely congestion — the rate halves (down to 1/16 of the share); otherwise it grows
by a tenth of the share, up to the share. The window keeps one random loss from reading
as congestion: alone, a lost packet of a 4-packet message is 25% loss, while in a
window of 10 it is 10% and halving takes 3 losses (1.2% likely at 5% random loss).
The threshold is its own parameter, not a multiple of `loss_bound`: tied to the bound
(it was 2 x loss_bound), a reliable `loss_bound: 0` channel halved at every lost
packet and ran 15x slower than the 0.1 arm at 1% loss, so the two arms differed in
pacing, not only in tolerance. It acts whatever the bound: with `loss_bound` at or
above `congestion_loss`, tolerated first-pass losses still halve the rate.
"""

from __future__ import annotations

import select
import time

import numpy as np

from testbed.transports.blt_wire import (
    AIMD_WINDOW_PACKETS,
    CONTROL,
    DATA,
    END,
    ENTRIES_PER_PACKET,
    INCREASE_FRACTION,
    KIND_DATA,
    MIN_RATE_FRACTION,
    NACK,
    PROBE_FIRST_S,
    PROBE_MAX_S,
    STOP,
    WIRE_OVERHEAD,
    entries_in,
    missing_packets_of,
    packet_count,
)
from testbed.transports.tcp import _recv_exact


class Sender:
    """`send` and what it needs: passes of paced packets, END probes, replies, AIMD.
    A mixin of `BltChannel`, whose shared I/O (`_wait`, `_udp`, `_control`,
    `_read_control`, `_reply`) and state (`__init__`) it uses."""

    def set_share(self, mbps: float) -> None:
        """The fair-share rate of this channel (also the AIMD ceiling)."""
        self.share_mbps = mbps
        self.pacer.rate_mbps = mbps

    # ------------------------------------------------------------------ sending

    def send(self, msg_id: int, data: np.ndarray) -> None:
        payload = np.ascontiguousarray(data, dtype=np.float32)
        entries, start = len(payload), time.time()
        missing = self._send_order(msg_id, packet_count(entries), self.udp).tolist()
        resent = attempt = 0
        while True:
            reply = self._send_pass(msg_id, attempt, missing, payload, start)
            if attempt:
                resent += sum(4 * entries_in(seq, entries) for seq in missing[: reply[4]])
            if reply[0] is None:  # the whole pass went out: probe
                end = CONTROL.pack(END, msg_id, attempt, entries, resent, start)
                self._control(end)
                reply = self._await_reply(msg_id, attempt, end)
            kind, count, value, bitmap = reply[:4]
            if attempt == 0:
                # a STOP says (packets covered, of them lost); a NACK (lost, bitmap size)
                lost, covered = (value, count) if kind == STOP else (count, len(missing))
                self._after_first_pass(lost, covered)
            if kind == STOP:
                return
            missing = missing_packets_of(bitmap, packet_count(entries))
            attempt += 1

    def _send_order(self, msg_id: int, packets: int, udp, sender: bool = True) -> np.ndarray:
        """The order a message's packets are first sent in. Under early completion, a
        random permutation drawn from (message id, the sender's UDP port), which both
        ends know: the part never sent is then a different random share of the entries
        each message, as SGD's bounded loss tolerance assumes, not always the model's
        last layers (which in order it was: the MLP's accuracy fell 0.88 -> 0.75-0.83).
        Otherwise in order."""
        if not self.early_stop:
            return np.arange(packets)
        port = (udp.getsockname() if sender else udp.getpeername())[1]
        return np.random.default_rng([msg_id, port]).permutation(packets)

    def _send_pass(self, msg_id, attempt, missing, payload, start) -> tuple:
        """Send the packets `missing`; under early completion, stop at a STOP.
        Returns the STOP as `_await_reply` does, else (None, ...), with the number of
        packets sent last."""
        for done, seq in enumerate(missing, 1):
            if self.drop is None or not self.drop(msg_id, seq, attempt):
                self._send_packet(msg_id, seq, payload, start)
            else:  # injected loss: pace as if sent, so timing stays comparable
                self.pacer.wait(WIRE_OVERHEAD + DATA.size + 4 * entries_in(seq, len(payload)))
            if not self.early_stop:
                continue
            readable = select.select([self.ctl, self.udp], [], [], 0)[0]
            reply = self._take_reply(msg_id, attempt, readable) if readable else None
            if reply is not None and reply[0] == STOP:
                return (*reply, done)
        return (None, 0, 0, b"", len(missing))

    def _send_packet(self, msg_id: int, seq: int, payload: np.ndarray, start: float) -> None:
        first = seq * ENTRIES_PER_PACKET
        count = entries_in(seq, len(payload))
        DATA.pack_into(self.tx, 0, KIND_DATA, msg_id, seq, first, count, start)
        size = DATA.size + 4 * count
        self.tx[DATA.size : size] = memoryview(payload[first : first + count]).cast("B")
        self.pacer.wait(WIRE_OVERHEAD + size)
        self._udp(memoryview(self.tx)[:size])

    def _await_reply(self, msg_id: int, attempt: int, end: bytes) -> tuple:
        """The first STOP of msg_id or NACK of (msg_id, attempt) from either socket, as
        (kind, count, value, bitmap); `end` (the probe) goes out again as a datagram
        while none comes."""
        # On a clock of its own: the peer's datagrams (its own probes among them) must
        # not keep postponing ours, or two waiting sides slow each other down.
        self.heard = time.monotonic()
        interval, probe_at = PROBE_FIRST_S, self.heard + PROBE_FIRST_S
        while True:
            readable = self._wait(max(0.0, probe_at - time.monotonic()))
            if time.monotonic() >= probe_at:
                self._udp(end)
                interval = min(2 * interval, PROBE_MAX_S)
                probe_at = time.monotonic() + interval
            reply = self._take_reply(msg_id, attempt, readable)
            if reply is not None:
                return reply

    def _take_reply(self, msg_id: int, attempt: int, readable: list) -> tuple | None:
        """Read one datagram and one control message from the `readable` sockets: the
        reply to our sending, or None. The peer's own traffic read meanwhile is kept
        for our next `recv`; duplicates of replies already handled are dropped. A STOP
        ends a message whatever attempt it answers (an early one answers none)."""
        if self.udp in readable:
            size = self._recv_udp()
            if size and self.rx[0] == KIND_DATA:
                self.early.append(bytes(self.rx[:size]))  # the peer's next message
            elif size >= CONTROL.size:
                kind, got, att, count, value, _ = CONTROL.unpack_from(self.rx)
                if kind == STOP and got == msg_id:
                    return kind, count, value, b""
                if kind == NACK and (got, att) == (msg_id, attempt):
                    bitmap = bytes(self.rx[CONTROL.size : CONTROL.size + value])
                    return kind, count, value, bitmap
                if kind == END and not self._answer_again(got, att):
                    self.early.append(bytes(self.rx[:size]))  # ends the next one
        if self.ctl in readable:
            kind, got, att, count, value, _ = self._read_control()
            bitmap = _recv_exact(self.ctl, value) if kind == NACK else b""
            if (kind == STOP and got == msg_id) or (
                kind == NACK and (got, att) == (msg_id, attempt)
            ):
                return kind, count, value, bitmap
            # otherwise a duplicate of something already handled
        return None

    def _after_first_pass(self, lost: int, packets: int) -> None:
        """AIMD on first passes, a decision per `AIMD_WINDOW_PACKETS` (module docstring)."""
        self.window[0] += packets
        self.window[1] += lost
        sent, lost = self.window
        if sent < AIMD_WINDOW_PACKETS:
            return
        self.window = [0, 0]
        if lost > self.congestion_loss * sent:
            self.pacer.rate_mbps = max(
                self.share_mbps * MIN_RATE_FRACTION, self.pacer.rate_mbps / 2
            )
        else:
            self.pacer.rate_mbps = min(
                self.share_mbps, self.pacer.rate_mbps + INCREASE_FRACTION * self.share_mbps
            )

    # ------------------------------------------------------------------ receiving
