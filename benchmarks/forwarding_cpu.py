"""What forwarding costs: CPU seconds ovs-vswitchd spends per Gbit per switch hop.

    sudo .venv/bin/python benchmarks/forwarding_cpu.py [--mbps 200 500] [--seconds 10]

A dumbbell (two switches, one host each side, one bottleneck link) at each rate:
ovs-vswitchd's CPU time (utime + stime from /proc) over `--seconds` idle (the control
arm: the same network, no traffic), then over `--seconds` of iperf3 TCP from h1 to h2.
The difference, over the bits iperf3 delivered and the 2 switches each packet
crosses, is the cost per Gbit per hop: the userspace datapath's, which docs/scale.md
sizes servers by. Rates the machine cannot forward show up as delivered < asked.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from testbed import shell
from testbed.runner import bare_testbed

HOPS = 2  # switches between h1 and h2 on a dumbbell


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(mbps: float, seconds: int, workdir: Path) -> dict:
    spec = {
        "name": f"fwd-{int(mbps)}",
        "topology": {"kind": "dumbbell", "hosts_per_side": 1, "link": {"bw_mbps": mbps}},
        "jobs": [{"name": "probe", "workers": 1, "servers": 1}],
    }
    with bare_testbed(spec, workdir / f"m{int(mbps)}", "benchmark") as tb:
        h1, h2 = tb.network.host("h1"), tb.network.host("h2")
        server = h2.popen(["iperf3", "-s", "-1"], stdout=open(os.devnull, "w"))
        pid = int(shell.run(["pidof", "ovs-vswitchd"]).stdout.split()[0])
        before = cpu_seconds(pid)
        time.sleep(seconds)  # the control: the same network, idle, as long
        idle = cpu_seconds(pid) - before
        before = cpu_seconds(pid)
        client = h1.popen(
            ["iperf3", "-c", tb.topo.host_info["h2"].ip, "-t", str(seconds), "-J", "-C", "cubic"],
            stdout=-1,
            text=True,
        )
        out, _ = client.communicate(timeout=seconds + 30)
        used = cpu_seconds(pid) - before
        server.wait(timeout=10)
    bits = json.loads(out)["end"]["sum_received"]["bytes"] * 8
    return {
        "asked_mbps": mbps,
        "delivered_mbps": round(bits / seconds / 1e6, 1),
        "vswitchd_cpu_s_idle": round(idle, 2),
        "vswitchd_cpu_s": round(used, 2),
        # what the traffic added over the idle control, per Gbit per switch hop
        "cpu_s_per_gbit_per_hop": round((used - idle) / (bits / 1e9) / HOPS, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbps", type=float, nargs="+", default=[200, 500])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mbps in args.mbps:
            print(measure(mbps, args.seconds, Path(tmp)))


if __name__ == "__main__":
    main()
