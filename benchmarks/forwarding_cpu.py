"""What forwarding costs: CPU seconds ovs-vswitchd spends per Gbit per switch hop.

    sudo .venv/bin/python benchmarks/forwarding_cpu.py [--mbps 100 500] [--seconds 10]
        [--ports packet afxdp] [--idle-ports 0 60]

A dumbbell (two switches, one host each side, one bottleneck link) at each rate, on
each forwarding plane (`network.ports`), with `--idle-ports` extra hosts per side
whose links carry nothing (a fat-tree's switches have 80 ports at k=4, 640 at k=8,
and the userspace datapath polls every one of them):
ovs-vswitchd's CPU time (utime + stime from /proc) over `--seconds` idle (the control
arm: the same network, no traffic), then over `--seconds` of iperf3 TCP from h1 to h2.
The difference, over the bits iperf3 delivered and the 2 switches each packet
crosses, is the cost per Gbit per hop: the userspace datapath's, which docs/scale.md
sizes servers by. Rates the machine cannot forward show up as delivered < asked;
`gbit_hops_per_s` is what one forwarding thread moved. The last lines print, per rate
and idle-port count, each plane's cost over the first plane's, from this one run.
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


def measure(mbps: float, seconds: int, workdir: Path, ports: str, idle: int) -> dict:
    per_side = 1 + idle
    spec = {
        "name": f"fwd-{int(mbps)}-{ports}-{idle}",
        "topology": {"kind": "dumbbell", "hosts_per_side": per_side, "link": {"bw_mbps": mbps}},
        "network": {"ports": ports},
        "jobs": [{"name": "probe", "workers": 1, "servers": 1}],
    }
    with bare_testbed(spec, workdir / spec["name"], "benchmark") as tb:
        h1, h2 = tb.network.host("h1"), tb.network.host(f"h{per_side + 1}")
        server = h2.popen(["iperf3", "-s", "-1"], stdout=open(os.devnull, "w"))
        pid = int(shell.run(["pidof", "ovs-vswitchd"]).stdout.split()[0])
        before = cpu_seconds(pid)
        time.sleep(seconds)  # the control: the same network, idle, as long
        idle_cpu = cpu_seconds(pid) - before
        before = cpu_seconds(pid)
        client = h1.popen(
            [
                "iperf3",
                "-c",
                tb.topo.host_info[h2.name].ip,
                "-t",
                str(seconds),
                "-J",
                "-C",
                "cubic",
            ],
            stdout=-1,
            text=True,
        )
        out, _ = client.communicate(timeout=seconds + 30)
        used = cpu_seconds(pid) - before
        server.wait(timeout=10)
    bits = json.loads(out)["end"]["sum_received"]["bytes"] * 8
    return {
        "ports": tb.ports,
        "switch_ports": len(tb.topo.interface_names()),
        "asked_mbps": mbps,
        "delivered_mbps": round(bits / seconds / 1e6, 1),
        "vswitchd_cpu_s_idle": round(idle_cpu, 2),
        "vswitchd_cpu_s": round(used, 2),
        # what the traffic added over the idle control, per Gbit per switch hop
        "cpu_s_per_gbit_per_hop": round((used - idle_cpu) / (bits / 1e9) / HOPS, 3),
        "gbit_hops_per_s": round(bits / 1e9 * HOPS / seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbps", type=float, nargs="+", default=[100, 500])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--ports", nargs="+", default=["packet", "afxdp"])
    parser.add_argument("--idle-ports", type=int, nargs="+", default=[0, 60])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for idle in args.idle_ports:
            for mbps in args.mbps:
                for ports in args.ports:
                    rows.append(measure(mbps, args.seconds, Path(tmp), ports, idle // 2))
                    print(json.dumps(rows[-1]))
    first = args.ports[0]
    for row in rows:
        base = next(
            r for r in rows
            if r["ports"] == first and (r["asked_mbps"], r["switch_ports"])
            == (row["asked_mbps"], row["switch_ports"])
        )  # fmt: skip
        if row is not base:
            print(
                f"{row['asked_mbps']:g} Mb/s, {row['switch_ports']} switch ports: {row['ports']} "
                f"costs {row['cpu_s_per_gbit_per_hop'] / base['cpu_s_per_gbit_per_hop']:.2f}x "
                f"the CPU per Gbit per hop of {first}, and moved "
                f"{row['gbit_hops_per_s'] / base['gbit_hops_per_s']:.2f}x the Gbit-hops/s"
            )


if __name__ == "__main__":
    main()
