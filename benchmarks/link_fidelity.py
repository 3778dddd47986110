"""Configured vs measured loss and throughput of the emulated links, on this machine.

    sudo .venv/bin/python benchmarks/link_fidelity.py [--packets 20000]

For every loss backend usable here (netem and/or nftables) it builds a dumbbell
(h1 - left - right - h2) and measures:
  - loss: UDP probe h1->h2 with only the bottleneck lossy at 1%, 5%, 10% (and 0%),
    end-to-end and per direction from the emulator's own counters;
  - throughput: one iperf3 TCP transfer (cubic) at 10, 50, 100 Mb/s.
Ratios are measured/configured from one run (the machine is shared: compare ratios).
TCP goodput excludes 4.4% of header bytes, so ~0.95 is a perfect shaper.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table
from scipy.stats import binom

from testbed.network.measure import tcp_transfer, udp_loss
from testbed.platform import probe
from testbed.runner import bare_testbed

LOSSES = (0, 1, 5, 10)
RATES = (10, 50, 100)


def session(workdir: Path, name: str, backend: str, tiers: dict, link: dict | None = None):
    topology = {"kind": "dumbbell", "hosts_per_side": 1, "link": link or {}, "tiers": tiers}
    spec = {"name": name, "topology": topology, "network": {"loss_backend": backend},
            "jobs": [{"name": "idle", "workers": 1}]}  # fmt: skip
    return bare_testbed(spec, workdir / name, "benchmark")


def loss_rows(workdir: Path, backend: str, packets: int) -> list[list[str]]:
    rows = []
    for pct in LOSSES:
        tb = session(workdir, f"{backend}-loss{pct}", backend, {"bottleneck": {"loss_pct": pct}})
        with tb:
            probe_result = udp_loss(tb.network, "h1", "h2", count=packets)
            links = tb.close()
        hop = next((e for e in links if e["direction"] == "left->right"), {})
        lo, hi = binom.interval(0.99, probe_result.sent, pct / 100)
        measured = 100 * probe_result.loss
        rows.append(
            [
                backend,
                f"loss {pct}%",
                f"{pct:.2f}%",
                f"{measured:.2f}%",
                f"{hop.get('measured_loss_pct', 0):.2f}%",
                f"{100 * lo / probe_result.sent:.2f}-{100 * hi / probe_result.sent:.2f}%",
                f"{measured / pct:.3f}" if pct else "-",
            ]
        )
    return rows


def rate_rows(workdir: Path, backend: str) -> list[list[str]]:
    rows = []
    for mbps in RATES:
        tb = session(workdir, f"{backend}-bw{mbps}", backend, {}, link={"bw_mbps": mbps})
        with tb:
            got = tcp_transfer(tb.network, "h1", "h2", seconds=5)
        rows.append(
            [
                backend,
                f"tcp {mbps} Mb/s",
                f"{mbps} Mb/s",
                f"{got.mbps:.2f} Mb/s",
                "",
                "",
                f"{got.mbps / mbps:.3f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000)
    args = parser.parse_args()
    platform = probe()
    backends = [
        b for b, ok in (("netem", platform.netem), ("nftables", platform.nftables_egress)) if ok
    ]
    table = Table(title="link fidelity (dumbbell, one run)")
    for col in (
        "backend",
        "setting",
        "configured",
        "measured end-to-end",
        "emulator counters",
        "binomial 99%",
        "ratio",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for row in loss_rows(Path(tmp), backend, args.packets) + rate_rows(Path(tmp), backend):
                table.add_row(*row)
    Console(width=150).print(table)
    skipped = {"netem", "nftables"} - set(backends)
    if skipped:
        print(f"not available on this machine: {', '.join(sorted(skipped))}")


if __name__ == "__main__":
    main()
