"""Configured vs measured loss, delay, jitter and throughput of the emulated links,
on each loss backend and OVS datapath this machine offers.

    sudo .venv/bin/python benchmarks/link_fidelity.py [--packets 20000] [--only delay]
    sudo make vm-test && sudo .venv/bin/python -m testbed.vm run -- \\
        .venv/bin/python benchmarks/link_fidelity.py        # on a stock kernel

Every arm is a dumbbell (h1 - left - right - h2) that differs from its control only
in the one setting under study:
  - loss (per backend): UDP probe h1->h2, only the bottleneck lossy at 0/1/5/10%;
    end-to-end and from the emulator's own counters, with the binomial 99% interval;
  - delay (netem): median of 60 ping RTTs with the bottleneck delayed 10/20/50 ms,
    against the same pair's RTT with no delay plus twice the delay;
  - jitter (netem): RTT standard deviation with 20 ms +- 10 ms, against the
    uniform-jitter expectation combined with the spread at 20 ms without jitter;
  - goodput under delay (netem): TCP at 50 Mb/s with 20 ms each way, where netem
    holds a bandwidth-delay product of packets on top of the queue;
  - goodput (per datapath, token bucket of --burst-ms): one iperf3 TCP transfer (cubic) at
    10/50/100 Mb/s, and
    at 10 Gb/s, where the datapath itself (not the shaper) is the limit; the
    kernel/user ratio of that last row is the datapath speed-up.
Ratios are measured/configured from one run (the machine is shared: compare ratios).
TCP goodput excludes 4.4% of header bytes, so ~0.95 is a perfect shaper.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table
from scipy.stats import binom

from testbed.network.measure import rtts_ms, tcp_transfer, udp_loss
from testbed.platform import probe
from testbed.results.rundir import utc_stamp
from testbed.runner import bare_testbed

LOSSES = (0, 1, 5, 10)
DELAYS_MS = (10, 20, 50)
JITTER = (20, 10)  # delay_ms, jitter_ms
RATES = (10, 50, 100)
DELAYED_RATE = (50, 20)  # Mb/s, one-way ms
UNSHAPED = 10_000  # Mb/s: far above what either datapath forwards on 2 cores
COLUMNS = ("what", "configured", "measured", "expected", "ratio")
PINGS = 60


def session(workdir: Path, name: str, tiers: dict, network: dict, link: dict | None = None):
    topology = {"kind": "dumbbell", "hosts_per_side": 1, "link": link or {}, "tiers": tiers}
    spec = {"name": name, "topology": topology, "network": network,
            "jobs": [{"name": "idle", "workers": 1}]}  # fmt: skip
    return bare_testbed(spec, workdir / name, "benchmark")


def loss_rows(workdir: Path, backend: str, packets: int) -> list[list[str]]:
    rows = []
    for pct in LOSSES:
        tiers = {"bottleneck": {"loss_pct": pct}}
        with session(workdir, f"{backend}-loss{pct}", tiers, {"loss_backend": backend}) as tb:
            probe_result = udp_loss(tb.network, "h1", "h2", count=packets)
            links = tb.close()
        hop = next((e for e in links if e["direction"] == "left->right"), {})
        lo, hi = binom.interval(0.99, probe_result.sent, pct / 100)
        measured = 100 * probe_result.loss
        rows.append(
            [
                f"loss ({backend})",
                f"{pct}%",
                f"{measured:.2f}% (counters {hop.get('measured_loss_pct', 0):.2f}%)",
                f"99%: {100 * lo / probe_result.sent:.2f}-{100 * hi / probe_result.sent:.2f}%",
                f"{measured / pct:.3f}" if pct else "-",
            ]
        )
    return rows


def rtts(workdir: Path, name: str, bottleneck: dict) -> list[float]:
    with session(workdir, name, {"bottleneck": bottleneck}, {}) as tb:
        return rtts_ms(tb.network, "h1", "h2", PINGS if "jitter_ms" not in bottleneck else 300)


def delay_rows(workdir: Path) -> list[list[str]]:
    base = statistics.median(rtts(workdir, "delay0", {}))
    rows = [["delay (netem)", "0 ms", f"RTT {base:.2f} ms", "base RTT", "-"]]
    for ms in DELAYS_MS:
        rtt = statistics.median(rtts(workdir, f"delay{ms}", {"delay_ms": ms}))
        expected = base + 2 * ms
        rows.append(["delay (netem)", f"{ms} ms one way", f"RTT {rtt:.2f} ms",
                     f"{expected:.2f} ms", f"{rtt / expected:.3f}"])  # fmt: skip
    delay, jitter = JITTER
    steady = statistics.stdev(rtts(workdir, "steady", {"delay_ms": delay}))
    spread = statistics.stdev(rtts(workdir, "jitter", {"delay_ms": delay, "jitter_ms": jitter}))
    expected = ((2 / 3) * jitter**2 + steady**2) ** 0.5
    rows.append(["jitter (netem)", f"{delay} +- {jitter} ms", f"RTT SD {spread:.2f} ms",
                 f"{expected:.2f} ms (SD without jitter {steady:.2f})",
                 f"{spread / expected:.3f}"])  # fmt: skip
    mbps, ms = DELAYED_RATE
    tiers = {"bottleneck": {"delay_ms": ms}}
    with session(workdir, "delayed-rate", tiers, {}, {"bw_mbps": mbps}) as tb:
        got = tcp_transfer(tb.network, "h1", "h2", seconds=10)
    rows.append(["goodput (netem delay)", f"{mbps} Mb/s, {ms} ms each way",
                 f"{got.mbps:.2f} Mb/s", f"{mbps} Mb/s", f"{got.mbps / mbps:.3f}"])  # fmt: skip
    return rows


def rate_rows(workdir: Path, datapath: str, burst_ms: float) -> tuple[list[list[str]], float]:
    rows, unshaped = [], 0.0
    for mbps in (*RATES, UNSHAPED):
        network = {"datapath": datapath, "shaper_burst_ms": burst_ms}
        with session(workdir, f"{datapath}-bw{mbps}", {}, network, {"bw_mbps": mbps}) as tb:
            got = tcp_transfer(tb.network, "h1", "h2", seconds=5)
        what = f"goodput ({datapath}, {burst_ms:g} ms bucket)"
        if mbps == UNSHAPED:
            unshaped = got.mbps
            rows.append([what, "unshaped", f"{got.mbps:.1f} Mb/s", "datapath limit", "-"])
        else:
            rows.append([what, f"{mbps} Mb/s", f"{got.mbps:.2f} Mb/s", f"{mbps} Mb/s",
                         f"{got.mbps / mbps:.3f}"])  # fmt: skip
    return rows, unshaped


def keep(out: Path, rows: list[list[str]]) -> list[list[str]]:
    """Append a finished section to out/fidelity.csv, so a later failure loses nothing."""
    path = out / "fidelity.csv"
    new = not path.exists()
    out.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {path}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="run directories (default benchmarks/out/...)")
    parser.add_argument("--only", choices=["loss", "delay", "rate"], help="one section")
    parser.add_argument("--burst-ms", type=float, default=2.0, help="network.shaper_burst_ms")
    args = parser.parse_args()
    out = args.out or Path("benchmarks/out/link_fidelity") / utc_stamp()
    platform = probe()
    backends = [b for b, ok in (("netem", platform.netem), ("nftables", platform.nftables_egress))
                if ok]  # fmt: skip
    datapaths = ["user", "kernel"] if platform.ovs_kernel_module else ["user"]
    table = Table(title=f"link fidelity (dumbbell, one run, kernel {platform.versions['kernel']})")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    unshaped = {}
    rows = []
    if args.only in (None, "loss"):
        rows += keep(out, [row for b in backends for row in loss_rows(out, b, args.packets)])
    if args.only in (None, "delay") and platform.netem:
        rows += keep(out, delay_rows(out))
    for datapath in datapaths if args.only in (None, "rate") else []:
        more, unshaped[datapath] = rate_rows(out, datapath, args.burst_ms)
        rows += keep(out, more)
    for row in rows:
        table.add_row(*row)
    Console(width=150).print(table)
    if len(unshaped) == 2:
        ratio = unshaped["kernel"] / unshaped["user"]
        print(f"kernel/user datapath goodput, unshaped: {ratio:.2f}x")
    features = {"sch_netem": platform.netem, "the openvswitch module": platform.ovs_kernel_module}
    missing = [name for name, ok in features.items() if not ok]
    if missing:
        print(f"not available on this machine: {', '.join(missing)}")


if __name__ == "__main__":
    main()
