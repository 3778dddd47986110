"""Measurements through a running `EmulatedNetwork`, shared by the link-fidelity
tests and `benchmarks/link_fidelity.py`: UDP loss probes, TCP transfers, ping round
trips, and the kernel's SNMP counters of a host."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from subprocess import PIPE

from testbed.errors import TestbedError
from testbed.network.protocol import Network

PROBE_PORT = 9000
IPERF_PORT = 5201


@dataclass(frozen=True)
class UdpLoss:
    sent: int
    received: int
    # Datagrams the receiving host itself discarded (socket buffer full): not link
    # loss. A slow receiver (e.g. under TCG emulation) must show up here, not as loss.
    receiver_drops: int = 0
    lost_digest: str = ""  # sha256 of which sequence numbers never arrived

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent


@dataclass(frozen=True)
class TcpTransfer:
    mbps: float  # receiver goodput
    retransmits: int  # sender's TCP retransmitted segments (TCP_INFO)


def udp_loss(
    net: Network,
    src: str,
    dst: str,
    count: int = 20_000,
    rate_pps: float = 4000,
    size: int = 64,
) -> UdpLoss:
    """Send `count` numbered datagrams src->dst; count what arrives."""
    ip = net.topo.host_info[dst].ip
    probe = [sys.executable, "-m", "testbed.network.probe"]
    where = ["--port", str(PROBE_PORT), "--count", str(count)]
    receiver = _start(net, dst, [*probe, "recv", "--bind", ip, *where])
    time.sleep(1.0)  # the receiver must be bound before the first datagram
    pace = ["--rate-pps", str(rate_pps), "--size", str(size)]
    before = snmp_counters(net, dst)
    sender = _start(net, src, [*probe, "send", "--dst", ip, *where, *pace])
    sent = _json_of(sender, "probe sender", count / rate_pps + 60)
    got = _json_of(receiver, "probe receiver", 60)
    after = snmp_counters(net, dst)
    drops = after["Udp.RcvbufErrors"] - before["Udp.RcvbufErrors"]
    return UdpLoss(sent["sent"], got["received"], drops, got["lost_sha256"])


def tcp_transfer(
    net: Network, src: str, dst: str, seconds: float = 5, congestion_control: str = "cubic"
) -> TcpTransfer:
    """One iperf3 TCP transfer src->dst; goodput at the receiver, retransmits at the sender."""
    ip = net.topo.host_info[dst].ip
    server = _start(net, dst, ["iperf3", "-s", "-1", "-B", ip, "-p", str(IPERF_PORT)])
    time.sleep(0.5)
    options = ["-p", str(IPERF_PORT), "-t", str(seconds), "-J", "-C", congestion_control]
    client = _start(net, src, ["iperf3", "-c", ip, *options])
    report = _json_of(client, "iperf3 client", seconds + 60)
    server.communicate(timeout=30)
    end = report["end"]
    return TcpTransfer(
        end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))
    )


def _start(net: Network, host: str, argv: list[str]):
    """A process in `host`'s namespace with captured text output."""
    return net.host(host).popen(argv, stdout=PIPE, stderr=PIPE, text=True)


def snmp_counters(net: Network, host: str) -> dict[str, int]:
    """The host namespace's MIB counters, e.g. ``Tcp.RetransSegs``, ``TcpExt.TCPOFOQueue``,
    ``Udp.RcvbufErrors`` (/proc/net/snmp and /proc/net/netstat)."""
    counters: dict[str, int] = {}
    for table in ("/proc/net/snmp", "/proc/net/netstat"):
        proc = _start(net, host, ["cat", table])
        lines = proc.communicate(timeout=10)[0].splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            prefix, *keys = names.split()
            if prefix in ("Tcp:", "TcpExt:", "Udp:"):
                counters.update(
                    {f"{prefix[:-1]}.{k}": int(v) for k, v in zip(keys, values.split()[1:])}
                )
    return counters


def rtts_ms(
    net: Network,
    src: str,
    dst: str,
    count: int,
    period_ms: int = 100,
    timeout_ms: int = 2000,
) -> list[float]:
    """Round-trip times of `count` pings src->dst, one every `period_ms` (lost ones
    left out). Each echo is timed on its own, so a round trip longer than the period is
    fine; `timeout_ms` must exceed the longest one (fping's default in count mode is the
    period, which would count every reply of a 100 ms path as lost)."""
    ip = net.topo.host_info[dst].ip
    argv = ["fping", "-C", str(count), "-p", str(period_ms), "-t", str(timeout_ms), "-q", ip]
    proc = _start(net, src, argv)
    _, err = proc.communicate(timeout=count * period_ms / 1000 + timeout_ms / 1000 + 60)
    # `-C` reports on stderr: "10.0.0.2 : 0.31 0.29 - 0.30" ("-" = no reply)
    line = next((ln for ln in err.splitlines() if ln.startswith(f"{ip} ")), "")
    if not line:
        raise TestbedError(f"fping {src}->{dst} gave no RTTs: {err.strip()[-300:]}")
    rtts = [float(v) for v in line.split(":", 1)[1].split() if _NUMBER.match(v)]
    if not rtts:
        raise TestbedError(f"fping {src}->{dst}: no reply to {count} pings")
    return rtts


_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _json_of(proc, what: str, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise TestbedError(f"{what} failed: {(err or out).strip()[-300:]}")
    return json.loads(out)
