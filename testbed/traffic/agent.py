"""The flow agent: one per host of a ``kind: flows`` traffic entry, inside the host.

It is both ends of the entry's flows on its host:

- a sink that reads each incoming connection to its end, then answers one byte;
- a source of Poisson arrivals at `rate_per_s` (the harness derives the rate from the
  entry's load), each flow to a peer drawn uniformly, of a size drawn from the CDF.

A flow's completion time runs from before its connect() until the sink's one-byte
answer arrives, i.e. after the sink has read every byte. Arrivals follow an absolute
schedule, so a late wake-up (a busy CPU) starts flows late but never drops any: the
count of flows, and so the offered load, does not depend on the machine's speed.

Every flow is one line of ``records`` when it completes; on SIGTERM the flows still
in flight are written with ``completed: false`` and the bytes sent so far. When an
entry's window ends, a ``window_closed`` line gives the number of flows started, so a
reader knows when every flow of the window has its line.

    python -m testbed.traffic.agent CONFIG.json
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import sys
import time
from pathlib import Path

from testbed.cdf import FlowSizes

CHUNK = 64 * 1024
CONNECT_RETRY_S = 3.0  # a peer's sink starts at the same moment as this agent


class Agent:
    """One host's sink and flow source, from its config (written by the harness)."""

    def __init__(self, config: dict):
        self.config = config
        sizes, cdf = config["cdf"]
        self.sizes = FlowSizes(tuple(sizes), tuple(cdf))
        self.rng = random.Random(config["seed"])
        self.records = open(config["records"], "a", buffering=1)
        self.in_flight: dict[int, dict] = {}
        # The loop holds tasks weakly, and a client stream's reader only through its
        # task: without these references a flow waiting for its answer can be
        # garbage-collected mid-flight (and never recorded as completed).
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        server = await asyncio.start_server(self._sink, self.config["ip"], self.config["port"])
        generator = asyncio.create_task(self._generate())
        await self.stopping.wait()
        generator.cancel()
        server.close()
        self._write_unfinished()
        self.records.close()

    async def _generate(self) -> None:
        """Start flows at Poisson arrival times until the entry's end (if it has one)."""
        start, end = self.config["start_unix"], self.config["end_unix"]
        self._write({"type": "window", "host": self.config["host"], "start": start, "end": end})
        at = start
        flow_id = 0
        while True:
            at += self.rng.expovariate(self.config["rate_per_s"])
            if end is not None and at >= end:
                closed = {"type": "window_closed", "host": self.config["host"], "flows": flow_id}
                self._write(closed)
                return
            size = self.sizes.sample(self.rng)
            dst = self.rng.choice(self.config["peers"])
            await asyncio.sleep(max(0.0, at - time.time()))
            flow_id += 1
            task = asyncio.create_task(self._flow(flow_id, dst, size))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _flow(self, flow_id: int, dst: list, size: int) -> None:
        record = {
            "type": "flow", "entry": self.config["entry"], "src": self.config["host"],
            "dst": dst[0], "size_bytes": size, "start": time.time(), "sent_bytes": 0,
        }  # fmt: skip
        self.in_flight[flow_id] = record
        try:
            reader, writer = await self._connect(dst[1])
            payload = memoryview(bytes(CHUNK))
            while record["sent_bytes"] < size:
                n = min(CHUNK, size - record["sent_bytes"])
                writer.write(payload[:n])
                await writer.drain()
                record["sent_bytes"] += n
            writer.write_eof()
            await reader.readexactly(1)
            record["fct_s"] = time.time() - record["start"]
            record["completed"] = True
            writer.close()
        except (OSError, asyncio.IncompleteReadError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["completed"] = False
        self.in_flight.pop(flow_id, None)
        self._write(record)

    async def _connect(self, ip: str):
        """A TCP connection with the entry's TOS and cubic, retried while the peer's
        sink is still starting."""
        deadline = time.monotonic() + CONNECT_RETRY_S
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, self.config["tos"])
            # This kernel defaults to bbr; background flows use Linux's usual default.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (ip, self.config["port"]))
                return await asyncio.open_connection(sock=sock)
            except ConnectionRefusedError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _sink(self, reader, writer) -> None:
        try:
            while await reader.read(CHUNK):
                pass
            writer.write(b"\x01")
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def _write_unfinished(self) -> None:
        for record in self.in_flight.values():
            self._write({**record, "completed": False})
        self.in_flight.clear()

    def _write(self, record: dict) -> None:
        self.records.write(json.dumps(record) + "\n")


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    asyncio.run(Agent(config).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
