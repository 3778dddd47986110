"""Link emulation tells the truth: the loss a spec asks for is the loss packets meet,
bandwidth is what was configured, TCP sees network loss (not local drops), and
nothing of the tc/nft state outlives the run.

Every test runs on each forwarding plane the machine offers (`ports`: AF_PACKET and
AF_XDP switch ports here, the kernel datapath in the VM tier), since each plane puts
the tc trees and loss marks somewhere else (`testbed.network.plane`).

Statistical tolerance (see `linkcheck`): each loss probe, each family of
per-direction counters and the dispersion test are held to a 1 - 0.05%/P level on
each of the P planes; this file makes 5 probes, 3 families and 1 dispersion test per
plane, so a correct emulator fails it with probability about 0.45% (the README's
"Tests" section adds up the suite's budget).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from subprocess import PIPE

import pytest

from testbed.network.measure import snmp_counters, tcp_transfer, udp_loss
from tests.integration.leaks import new_leftovers, snapshot
from tests.integration.linkcheck import (
    assert_directions,
    assert_dispersion,
    assert_loss,
    session,
)

pytestmark = pytest.mark.integration

N = 20_000


@pytest.mark.parametrize("loss_pct", [1, pytest.param(10, marks=pytest.mark.smoke)])
def test_udp_loss_over_three_lossy_hops_both_directions(tmp_path, loss_pct, ports):
    before = snapshot()
    tb = session(
        tmp_path,
        f"loss{loss_pct}",
        {"kind": "dumbbell", "hosts_per_side": 1, "link": {"loss_pct": loss_pct}},
        ports=ports,
    )
    with tb:
        q = 1 - (1 - loss_pct / 100) ** 3  # h->switch, switch->switch, switch->h
        for src, dst in (("h1", "h2"), ("h2", "h1")):
            assert_loss(udp_loss(tb.network, src, dst, count=N), q)
        links = tb.close()
    # Per direction, the emulator's own counters agree with the configuration.
    lossy = [entry for entry in links if entry["offered_packets"] > 1000]
    assert len(lossy) == 6
    assert_directions(lossy)
    leaked = new_leftovers(before, snapshot())
    assert leaked == {}, leaked


def test_core_tier_loss_hits_only_inter_pod_paths(tmp_path, ports):
    tb = session(
        tmp_path,
        "core",
        {"kind": "fat-tree", "k": 4, "tiers": {"core": {"loss_pct": 10}}},
        ports=ports,
    )
    with tb:
        inter = udp_loss(tb.network, "h1", "h16", count=N)  # agg->core, core->agg: 2 lossy hops
        assert_loss(inter, 1 - 0.9**2)
        intra = udp_loss(tb.network, "h1", "h3", count=N)  # edge->agg->edge: no core link
        assert intra.received == intra.sent


def test_tcp_under_nftables_loss_retransmits_after_real_network_loss(tmp_path, ports):
    tb = session(
        tmp_path,
        "tcploss",
        {"kind": "dumbbell", "hosts_per_side": 1, "tiers": {"bottleneck": {"loss_pct": 5}}},
        network={"loss_backend": "nftables"},
        ports=ports,
    )
    with tb:
        before = snmp_counters(tb.network, "h2")
        transfer = tcp_transfer(tb.network, "h1", "h2", seconds=4)
        after = snmp_counters(tb.network, "h2")
    # The sender retransmitted, and the receiver saw holes in the sequence space:
    # segments really went missing between the hosts, not inside the sender.
    assert transfer.retransmits > 0
    assert after["TcpExt.TCPOFOQueue"] > before["TcpExt.TCPOFOQueue"]
    assert transfer.mbps > 0


@pytest.mark.parametrize("bw", [10, 50, 100])
def test_tcp_throughput_matches_configured_bandwidth(tmp_path, bw, ports):
    """Goodput within 10% of the configured rate. TCP/IP/Ethernet headers take 4.4% of
    a full 1514-byte frame, so a correct shaper lands at ~95% of `bw`."""
    tb = session(
        tmp_path,
        f"bw{bw}",
        {"kind": "dumbbell", "hosts_per_side": 1, "link": {"bw_mbps": bw}},
        ports=ports,
    )
    with tb:
        transfer = tcp_transfer(tb.network, "h1", "h2", seconds=5)
    assert 0.9 * bw <= transfer.mbps <= bw, f"{transfer.mbps:.1f} Mb/s on a {bw} Mb/s link"


def test_loss_is_independent_per_packet_over_many_directions(tmp_path, ports):
    """5% on all 18 directions of a dumbbell with 4 hosts a side. Every host sends 5,000
    datagrams to its mirror on the other side at once, so each direction carries
    4,500-19,000 packets (np >= 225); their loss counts pass the family-wise binomial
    check one by one, and the chi-square dispersion test together."""
    tb = session(
        tmp_path,
        "dispersion",
        {"kind": "dumbbell", "hosts_per_side": 4, "link": {"loss_pct": 5}},
        ports=ports,
    )
    pairs = [(f"h{i}", f"h{i + 4}") for i in range(1, 5)]
    pairs += [(b, a) for a, b in pairs]
    with tb:
        with ThreadPoolExecutor(len(pairs)) as pool:
            probes = list(
                pool.map(lambda p: udp_loss(tb.network, *p, count=5000, rate_pps=2000), pairs)
            )
        links = tb.close()
    assert all(p.sent == 5000 for p in probes)
    lossy = [e for e in links if e["offered_packets"] >= 4000]  # to a host: ~4,500
    assert len(lossy) == 18
    assert_directions(lossy)
    assert_dispersion(lossy)


@pytest.mark.parametrize("priority_bands,bands", [("auto", 1), ("always", 4)])
def test_each_port_buffers_queue_pkts_whatever_the_number_of_bands(
    tmp_path, priority_bands, bands, ports
):
    """Read back the tc tree of every egress interface of a running network: the pfifo
    limits under its leaves add up to the configured queue_pkts, per direction."""
    topology = {
        "kind": "dumbbell",
        "hosts_per_side": 2,
        "link": {"queue_pkts": 50},
        "tiers": {"bottleneck": {"queue_pkts": 30}},
    }
    network = {"priority_bands": priority_bands}
    tb = session(tmp_path, f"bands{bands}", topology, network=network, ports=ports)
    with tb:
        for d in tb.topo.directions():
            switch_port = d.src in tb.topo.switch_info
            limits = _fifo_limits(tb.network, d.src, tb.network.tree_interface(d))
            assert len(limits) == (bands if switch_port else 1), d.name
            assert sum(limits) == d.params.queue_pkts, (d.name, limits)
        assert {d.params.queue_pkts for d in tb.topo.directions()} == {30, 50}


def _fifo_limits(net, node: str, interface: str) -> list[int]:
    """The packet limits of the pfifo qdiscs on `interface`, as the kernel reports them."""
    proc = net.host(node).popen(["tc", "-j", "qdisc", "show", "dev", interface], stdout=PIPE)
    qdiscs = json.loads(proc.communicate(timeout=10)[0])
    return [q["options"]["limit"] for q in qdiscs if q["kind"] == "pfifo"]
