"""A UDP loss probe run inside emulated hosts: numbered datagrams at a fixed rate.

    python -m testbed.network.probe recv --bind IP --port P --count N
    python -m testbed.network.probe send --dst IP --port P --count N --rate-pps R

The receiver prints one JSON line: how many distinct sequence numbers arrived, and
a digest of which did not (equal digests: the same packets were lost). It stops
when all have arrived, or after `--idle-s` of silence once traffic started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import struct
import time

SEQ = struct.Struct("!I")


def send(dst: str, port: int, count: int, rate_pps: float, size: int) -> dict:
    """Send `count` datagrams of `size` bytes, paced at `rate_pps`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pad = b"\0" * max(0, size - SEQ.size)
    start = time.perf_counter()
    for seq in range(count):
        due = start + seq / rate_pps
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.001))
        sock.sendto(SEQ.pack(seq) + pad, (dst, port))
    return {"sent": count, "seconds": time.perf_counter() - start}


def recv(bind: str, port: int, count: int, idle_s: float, timeout_s: float) -> dict:
    """Count distinct sequence numbers until all `count` arrived or the line went quiet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind, port))
    seen = bytearray(count)
    got = dupes = 0
    deadline = time.monotonic() + timeout_s
    sock.settimeout(timeout_s)
    while got < count and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        sock.settimeout(idle_s)  # once traffic flows, silence means the sender is done
        (seq,) = SEQ.unpack_from(data)
        if seq < count and not seen[seq]:
            seen[seq] = 1
            got += 1
        else:
            dupes += 1
    lost = hashlib.sha256(bytes(seen)).hexdigest()
    return {"expected": count, "received": got, "duplicates": dupes, "lost_sha256": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--idle-s", type=float, default=2.0)
    r.add_argument("--timeout-s", type=float, default=120.0)
    s = sub.add_parser("send")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate-pps", type=float, default=4000)
    s.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if args.mode == "recv":
        out = recv(args.bind, args.port, args.count, args.idle_s, args.timeout_s)
    else:
        out = send(args.dst, args.port, args.count, args.rate_pps, args.size)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
