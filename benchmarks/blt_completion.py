"""blt's completion rules over loopback, no loss: how long a message takes to complete
under `completion: early` against `end`, at loss_bound 0.1.

    .venv/bin/python benchmarks/blt_completion.py [--packets 100] [--messages 40] [--rate 100]

Three arms on one loopback channel pair each, paced alike (--rate Mb/s), sending the
same messages with the same data, interleaved message by message so that the
machine's noise falls on all three alike:
  - end, bound 0.1 (the control: every packet is sent; the receiver answers END);
  - early, bound 0.1 (the paper's rule: STOP once 90% arrived; expected ~0.9 of end);
  - early, bound 0 (early completion that cannot skip anything: what looking for a
    STOP between packets costs by itself; expected ~1.0 of end).
The FCT is the receiver's: from the sender's start to the receiver's answer. The
ratio of medians is printed from this one run (the machine is shared: compare ratios).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading

import numpy as np
from rich.console import Console
from rich.table import Table

from testbed.spec.schema import BltSpec
from testbed.transports.blt import ENTRIES_PER_PACKET, BltChannel, BltTransport

ARMS = (("end", 0.1), ("early", 0.1), ("early", 0.0))


def loopback_pair(completion: str, loss_bound: float, rate_mbps: float):
    """(sender, receiver) blt channels over 127.0.0.1."""
    spec = BltSpec(kind="blt", loss_bound=loss_bound, rate_mbps=rate_mbps, completion=completion)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = BltTransport(spec).listen("127.0.0.1", port)
    got: dict = {}
    accept = threading.Thread(target=lambda: got.update(listener.accept(1, 10)))
    accept.start()
    sender = BltTransport(spec).connect("127.0.0.1", port, 0, 10)
    accept.join()
    listener.close()
    return sender, got[0]


def one_message(sender: BltChannel, receiver: BltChannel, msg_id: int, data: np.ndarray):
    """Send one message; the receiver's MessageStats."""
    out = np.zeros_like(data)
    t = threading.Thread(target=sender.send, args=(msg_id, data))
    t.start()
    stats = receiver.recv(msg_id, out)
    t.join(timeout=60)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100, help="packets per message")
    parser.add_argument("--messages", type=int, default=40, help="messages per arm")
    parser.add_argument("--rate", type=float, default=100.0, help="pacing rate, Mb/s")
    args = parser.parse_args()
    data = np.random.default_rng(0).normal(size=args.packets * ENTRIES_PER_PACKET)
    data = data.astype(np.float32)
    pairs = {arm: loopback_pair(*arm, args.rate) for arm in ARMS}
    fct: dict = {arm: [] for arm in ARMS}
    delivered: dict = {arm: [] for arm in ARMS}
    for msg_id in range(args.messages):
        for arm in ARMS:
            stats = one_message(*pairs[arm], msg_id, data)
            fct[arm].append(stats.fct_s)
            delivered[arm].append(stats.delivered_fraction)
    for sender, receiver in pairs.values():
        sender.close()
        receiver.close()
    control = statistics.median(fct[ARMS[0]])
    table = Table(
        title=f"{args.messages} messages of {args.packets} packets at {args.rate:g} Mb/s, no loss"
    )
    for column in ("completion", "loss_bound", "median FCT (ms)", "p95 FCT (ms)",
                   "delivered (mean)", "FCT / end's"):  # fmt: skip
        table.add_column(column)
    for arm in ARMS:
        median = statistics.median(fct[arm])
        p95 = float(np.percentile(fct[arm], 95))
        table.add_row(arm[0], f"{arm[1]:g}", f"{1e3 * median:.1f}", f"{1e3 * p95:.1f}",
                      f"{np.mean(delivered[arm]):.3f}", f"{median / control:.3f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
