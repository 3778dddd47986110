"""blt's wire format and the receiver's reassembly of a message (`testbed.transports.blt`
has the protocol): datagram layouts, how many packets a message takes, pacing, and
which entries of a message have arrived."""

from __future__ import annotations

import struct
import time

import numpy as np

from testbed.transports.base import MessageStats

# Every UDP datagram starts with a kind byte. Data: kind, message id, packet index,
# first entry, entry count, the sender's start time (an early STOP's FCT needs it).
DATA = struct.Struct("!BIIIHd")
# Control: kind, message id, attempt, count, value, sender's start time. END: (entries
# in the message, bytes resent so far); NACK: (packets missing, bitmap length); STOP:
# (packets it covers, of them missing) -- what the sender's AIMD counts.
CONTROL = struct.Struct("!BIHQQd")
KIND_DATA, END, STOP, NACK, PORT = range(5)
MTU = 1500
UDP_ROOM = MTU - 20 - 8  # IPv4 + UDP headers
ENTRIES_PER_PACKET = (UDP_ROOM - DATA.size) // 4  # 362 floats
COMPLETIONS = ("end", "early")
WIRE_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4, UDP headers: what the link really carries
MIN_RATE_FRACTION = 1 / 16
INCREASE_FRACTION = 0.1
AIMD_WINDOW_PACKETS = 10  # first-pass packets per AIMD decision (module docstring)
LINGER_S = 10.0  # how long `close` waits for the peer's kernel to acknowledge our data
IO_TIMEOUT_S = 300.0
# The sender's re-sent END: first after 50 ms, beyond the RTTs seen here once training
# runs (1-40 ms), so an answer on its way is rarely duplicated; then doubling up to
# 250 ms, about TCP's 200 ms minimum retransmission timeout. A peer busy elsewhere
# gets at most 4 probes of 31 B a second.
PROBE_FIRST_S = 0.05
PROBE_MAX_S = 0.25


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


class Reassembly:
    """Receiver state of one message: which packets arrived, entries written in place."""

    def __init__(self, msg_id: int, out: np.ndarray, order: np.ndarray | None = None):
        self.msg_id, self.out = msg_id, out
        self.entries = len(out)
        self.have = bytearray(packet_count(self.entries))
        # Each packet's place in the sender's first pass (the order it was sent in).
        order = np.arange(len(self.have)) if order is None else order
        self.place = np.empty(len(order), np.int64)
        self.place[order] = np.arange(len(order))
        self.view = memoryview(out).cast("B")
        self.got = 0  # entries delivered, counted as packets come (the completion rule)
        self.highest = -1  # the latest place in the sender's order delivered
        self.start: float | None = None  # the sender's, carried by every packet
        # Bytes resent: as the last END declared them, and delivered since its NACK.
        self.resent_sent = self.resent_since = 0
        self.nacked = False

    def take(self, datagram) -> None:
        """Store one data datagram if it belongs to this message (else it is stale)."""
        if len(datagram) < DATA.size:
            return
        _, got, seq, first, count, start = DATA.unpack_from(datagram)
        if (
            got != self.msg_id
            or first + count > self.entries
            or seq >= len(self.have)
            or len(datagram) != DATA.size + 4 * count
        ):
            return
        if self.have[seq]:
            return  # a duplicate (a late copy of a resent packet)
        self.view[4 * first : 4 * (first + count)] = datagram[DATA.size :]
        self.have[seq] = 1
        self.got += count
        self.highest = max(self.highest, int(self.place[seq]))
        self.start = start
        if self.nacked:  # everything new after our NACK was resent
            self.resent_since += 4 * count

    @property
    def mask(self) -> np.ndarray:
        """Per-entry delivered flags."""
        flags = np.frombuffer(self.have, np.uint8).astype(bool)
        return np.repeat(flags, ENTRIES_PER_PACKET)[: self.entries]

    @property
    def delivered(self) -> float:
        return self.got / self.entries if self.entries else 1.0

    @property
    def missing_packets(self) -> int:
        return len(self.have) - sum(self.have)

    def gaps(self) -> tuple[int, int]:
        """(packets sent up to the latest delivered, of them missing): what an early
        STOP can say was lost; packets after it were most likely never sent."""
        covered = self.highest + 1
        return covered, covered - sum(self.have)

    def needed(self, enough: float) -> int:
        """How many more packets the fraction `enough` needs (full ones, so at most
        that many; the last, shorter packet is not counted on)."""
        short = enough * self.entries - self.got
        return max(0, -(-int(np.ceil(short)) // ENTRIES_PER_PACKET))

    def missing_bitmap(self, limit: int | None = None) -> bytes:
        """The missing packets; if `limit` is given, the first that many of them in the
        sender's order (so the ones left out differ from message to message)."""
        missing = np.frombuffer(self.have, np.uint8) == 0
        if limit is not None:
            seqs = np.flatnonzero(missing)
            missing[seqs[np.argsort(self.place[seqs])][limit:]] = False
        return bytes(np.packbits(missing))

    def stats(self, fct_s: float, resent: int) -> MessageStats:
        mask = self.mask
        return MessageStats(
            self.msg_id,
            self.out.nbytes,
            fct_s,
            float(mask.mean()),
            int(resent),
            None if mask.all() else mask,
        )


def entries_in(seq: int, entries: int) -> int:
    return min(ENTRIES_PER_PACKET, entries - seq * ENTRIES_PER_PACKET)


def missing_packets_of(bitmap: bytes, packets: int) -> list[int]:
    return np.flatnonzero(np.unpackbits(np.frombuffer(bitmap, np.uint8))[:packets]).tolist()
