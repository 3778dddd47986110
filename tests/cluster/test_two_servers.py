"""Two real servers: the guests of `make cluster-test` (testbed/vm/pair.py), joined by
one private segment over the host's loopback. Skipped anywhere else.

Guest a (this machine, 10.231.0.1) runs the harness and the controller; guest b
(10.231.0.2) holds half the network. Every check is exact: ping replies either come
back or not, and a tunnel either carried the echo requests or did not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from testbed.control import ControllerProcess, controller_jobs
from testbed.ledger import Ledger
from testbed.network.cluster import controller_address
from testbed.network.cluster_net import ClusterNetwork
from testbed.platform import probe
from testbed.spec import validate
from topologies import build_topology

PEER = os.environ.get("MLNET_CLUSTER_PEER")
REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not PEER, reason="needs a second server (`sudo make cluster-test`)"),
]
SPEC = {
    "name": "two-servers",
    "topology": {"kind": "fat-tree", "k": 4, "link": {"bw_mbps": 50}},
    "controller": {"routing": "ecmp"},
    "jobs": [{"name": "j", "workers": 2}],
    "cluster": {"servers": ["mlnet-a", PEER or "mlnet-b"], "placement": "pod", "tunnel": "gre"},
}


# A PS job with its server and one worker on a, two workers on b: every iteration, b's
# workers push their gradients to h1 and pull the model back through a tunnel.
TRAIN = {
    **SPEC,
    "name": "two-servers-train",
    "launcher": "exec",  # what a cluster does; the one-server arm too
    "jobs": [{"name": "ps", "servers": 1, "workers": 3, "placement": ["h1", "h2", "h9", "h10"],
              "iterations": 40, "timeout_s": 1200}],
}  # fmt: skip


def test_doctor_passes_on_both_servers(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    proc = subprocess.run(
        [sys.executable, "-m", "testbed", "doctor", "--cluster", str(spec)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0
    assert "controller address: 10.231.0.1" in proc.stdout


def test_a_fat_tree_split_by_pods_routes_across_gre_tunnels(tmp_path):
    """k=4 over two servers by pods: pods 0-1 and cores c1_* on a, pods 2-3 and cores
    c2_* on b, so 8 aggregation-core links are tunnels. The controller on a programs
    b's switches too; h1 (a) and h16 (b) exchange 200 pings, and the tunnel ends on
    each side sent at least the 200 packets going that way, through the link's tc
    tree (50 Mb/s) on each end."""
    import faulthandler

    from mininet.log import setLogLevel

    setLogLevel("info")  # Mininet's progress on the console (`cluster-test` runs with -s)
    faulthandler.dump_traceback_later(300, repeat=True)  # where it is, if it is stuck
    exp = validate(SPEC, "two-servers")
    topo = build_topology(exp.topology)
    address = controller_address(list(exp.cluster.servers))
    (tmp_path / "raw").mkdir()
    (tmp_path / "logs").mkdir()
    ledger = Ledger.open("cluster-test", str(tmp_path))
    no_jobs = exp.model_copy(update={"jobs": ()})  # the network alone: nothing to prioritize
    jobs = controller_jobs(no_jobs, {}, 0.0, tmp_path / "controller.csv")
    controller = ControllerProcess(topo.to_json(), jobs, "ecmp", tmp_path, ledger, address)
    port = controller.start()
    net = ClusterNetwork(topo, exp.cluster, address, port, ledger, probe().datapath("auto"))
    try:
        net.start()
        controller.wait_ready(timeout_s=180)
        tunnels = net.cross_links()
        assert len(tunnels) == 8 and all({a[0], b[0]} == {"a", "c"} for a, b in tunnels)
        assert {net.server_of(h) for h in ("h1", "h8")} == {"mlnet-a"}
        assert {net.server_of(h) for h in ("h9", "h16")} == {PEER}
        before = _tunnel_tx(net, tunnels)
        out = net.net.get("h1").cmd("fping -q -c 200 -p 20 -t 500", topo.host_info["h16"].ip)
        assert re.search(r"200/200/0%", out), out
        after = _tunnel_tx(net, tunnels)
        sent = {side: after[side] - before[side] for side in after}
        assert sent["mlnet-a"] >= 200 and sent[PEER] >= 200, sent
        shaped = _tunnel_qdiscs(net, tunnels)
        assert all("rate 50Mbit" in out for out in shaped.values()), shaped
        assert sum(_sent_packets(out) for out in shaped.values()) >= 400, shaped
        reach = net.net.get("h9").cmd(
            "fping -q -c 2 -p 50 -t 500",
            *(topo.host_info[h].ip for h in topo.host_names() if h != "h9"),
        )
        assert reach.count(" 2/2/0%") == 15, reach  # every other host, both servers
    finally:
        faulthandler.cancel_dump_traceback_later()
        net.stop()
        controller.stop()
        ledger.release()
    assert _leftovers() == ("", "")


def _tunnel_tx(net: ClusterNetwork, tunnels) -> dict[str, int]:
    """Packets sent into the tunnels, summed per server (each tunnel end is a gretap
    interface in the root namespace of its switch's server)."""
    total: dict[str, int] = {}
    for a, b in tunnels:
        for node in (a, b):
            intf = net.net.get(node).connectionsTo(net.net.get(b if node == a else a))[0][0]
            count = net.net.get(node).cmd(f"cat /sys/class/net/{intf}/statistics/tx_packets")
            server = net.server_of(node)
            total[server] = total.get(server, 0) + int(count.strip())
    return total


def _tunnel_qdiscs(net: ClusterNetwork, tunnels) -> dict[str, str]:
    """`tc -s class` of every tunnel end (the tree's HTB classes), on its own server."""
    out = {}
    for a, b in tunnels:
        for node, peer in ((a, b), (b, a)):
            intf = net.net.get(node).connectionsTo(net.net.get(peer))[0][0]
            out[str(intf)] = net.net.get(node).cmd(f"tc -s class show dev {intf}")
    return out


def _sent_packets(qdisc_stats: str) -> int:
    """Packets through the tree (its first class's `Sent ... pkt`; with one band, every
    packet passes both classes)."""
    match = re.search(r"Sent \d+ bytes (\d+) pkt", qdisc_stats)
    return int(match.group(1)) if match else 0


def test_a_ps_job_trains_across_both_servers_and_against_one(tmp_path):
    """`benchmarks/cluster.py` on a two-server spec: `testbed run` across both servers,
    then the same spec without `cluster:` on a alone (the control arm: only where the
    nodes run differs). The job is ok in both; its records came home from b; links.csv
    shows the tunnels carrying at least the payload that had to cross them; nothing is
    left on either guest. The iteration times are printed, not judged (TCG)."""
    from testbed.training.size import model_bytes as one_copy

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TRAIN))
    bench = subprocess.run(
        [sys.executable, "benchmarks/cluster.py", str(spec), "--keep", str(tmp_path / "runs"),
         "--json", str(tmp_path / "figures.json")],
        cwd=REPO, timeout=2400, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert bench.returncode == 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    for arm, fig in figures["arms"].items():
        assert fig["status"] == "ok", (arm, fig["error"])
    two = Path(figures["arms"]["cluster"]["run_dir"])
    meta = json.loads((two / "metadata.json").read_text())
    assert len(meta["cluster"]["tunnelled_links"]) == 8
    assert meta["cluster"]["hosts"][PEER] == [f"h{i}" for i in range(9, 17)]
    iterations = pd.read_csv(two / "iterations.csv")
    assert set(iterations["rank"]) == {0, 1, 2}  # ranks 1 and 2 wrote on b
    assert (iterations.groupby("rank")["iteration"].max() == 39).all()
    # Each of b's 2 workers pushes and pulls the float32 model once per iteration, so at
    # least 2 x 2 x iterations x model bytes crossed (headers and retransmits only add).
    job = validate(TRAIN, "t").jobs[0]
    model_bytes = one_copy(job)
    crossed = figures["arms"]["cluster"]["tunnel_bytes"]
    assert crossed >= 2 * 2 * 40 * model_bytes, (crossed, model_bytes)
    # A ratio only between arms that ended ok and were trusted (under TCG the CPU often
    # saturates: then the reason is named instead).
    usable = not any(fig["left_out"] for fig in figures["arms"].values())
    assert ("ps" in figures["iteration_ratio"]) == usable, figures["arms"]
    assert _leftovers() == ("", "")


def _leftovers() -> tuple[str, str]:
    """What each guest still holds (testbed/vm/leftovers.sh), "" for nothing."""
    here = subprocess.run(["sh", "testbed/vm/leftovers.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    there = subprocess.run(["ssh", PEER, "sh", "/opt/mlnet-testbed/testbed/vm/leftovers.sh"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    return here.stdout, there.stdout


def test_a_crash_on_the_cluster_is_cleaned_from_the_first_server(tmp_path):
    """SIGKILL the harness while b's workers train: no teardown runs, and b keeps
    bridges, namespaces and training processes. `testbed clean` on a then removes what
    the ledger recorded on both servers, and only that."""
    spec = tmp_path / "spec.yaml"
    long = {**TRAIN, "name": "crash", "jobs": [{**TRAIN["jobs"][0], "iterations": 100_000}]}
    spec.write_text(yaml.safe_dump(long))
    harness = subprocess.Popen(
        [sys.executable, "-m", "testbed", "run", str(spec), "--out", str(tmp_path / "run")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_training_on_peer(harness, processes=2, timeout_s=1200)
        harness.kill()  # the harness alone: its children live on, as after a crash
        harness.wait(30)
        here, there = _leftovers()
        assert "bridge" in there and "netns" in there, there
        cleaned = subprocess.run([sys.executable, "-m", "testbed", "clean"], cwd=REPO,
                                 capture_output=True, text=True, timeout=600)  # fmt: skip
        print(cleaned.stdout)
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"{PEER}: bridge" in cleaned.stdout, cleaned.stdout  # named by server
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(30)
        subprocess.run([sys.executable, "-m", "testbed", "clean"], cwd=REPO,
                       capture_output=True, timeout=600)  # fmt: skip
    assert _leftovers() == ("", "")


def _wait_for_training_on_peer(harness: subprocess.Popen, processes: int, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert harness.poll() is None, "the run ended before it was killed"
        found = subprocess.run(["ssh", PEER, "pgrep", "-f", "testbed.training"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        if len(found.stdout.split()) >= processes:
            return
        time.sleep(5)
    pytest.fail(f"no {processes} training processes on {PEER} within {timeout_s} s")
