"""The transport interface the training code talks through.

A `Transport` makes `Channel`s between two processes; a channel moves float32
vectors ("messages") tagged with an id (the iteration). Reliable transports deliver
every entry; loss-tolerant ones may deliver a subset and say which entries arrived
(`MessageStats.mask`). Every message yields the numbers `messages.csv` records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass
class MessageStats:
    """What one message cost and how much of it arrived (receiver's view)."""

    msg_id: int
    nbytes: int  # payload bytes of the message
    fct_s: float  # sender's first byte -> receiver has the message
    delivered_fraction: float = 1.0
    retransmitted_bytes: int = 0
    mask: np.ndarray | None = None  # bool per entry; None means every entry arrived


class Channel(ABC):
    """One bidirectional message pipe between this process and `peer`."""

    peer: int  # the peer's rank in its role

    @abstractmethod
    def send(self, msg_id: int, data: np.ndarray) -> None:
        """Send `data` (float32, 1-D) as message `msg_id`."""

    @abstractmethod
    def recv(self, msg_id: int, out: np.ndarray, reliable: bool = False) -> MessageStats:
        """Receive message `msg_id` into `out` (entries not delivered are left as they were).

        `reliable`: wait for every entry, whatever the transport's loss bound (for the
        small bookkeeping messages that keep replicas consistent)."""

    def set_share(self, mbps: float) -> None:  # noqa: B027 - optional hook, default no-op
        """The sending rate this channel may use; only paced transports (blt) use it."""

    @abstractmethod
    def close(self) -> None:
        """Release sockets."""

    def abort(self) -> None:
        """Give the peer up: close, waking a thread blocked in `recv` on this channel."""
        self.close()


class Listener(ABC):
    """The accepting side: yields one channel per connecting peer."""

    @abstractmethod
    def accept(self, peers: int, timeout_s: float) -> dict[int, Channel]:
        """Wait for `peers` peers to connect; return their channels keyed by rank."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening."""


class Transport(ABC):
    """Factory for channels of one kind (tcp, blt, gloo, ...)."""

    name: str

    @abstractmethod
    def listen(self, ip: str, port: int) -> Listener:
        """Listen on `ip:port` for peers."""

    @abstractmethod
    def connect(self, ip: str, port: int, rank: int, timeout_s: float) -> Channel:
        """Connect to a listener at `ip:port`, introducing ourselves as `rank`."""
