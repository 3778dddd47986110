"""What only a stock kernel can run: netem (delay, jitter, loss, seed) and the OVS
kernel datapath. Each test is skipped, with the reason, where the kernel lacks what
it needs; `make vm-test` runs them in a Debian 12 guest whose cloud kernel has both.

Every test compares measured against configured; the tolerances:

- delay: the median of 60 ping RTTs is within 10% of the base RTT (the same pair,
  same topology, no delay) plus the configured delay of every crossing. The median
  ignores the few pings that a busy or emulated CPU delays by a scheduler tick.
- jitter: netem without a distribution table draws each packet's delay uniformly
  from [delay - jitter, delay + jitter], so an RTT that crosses the jittered link
  twice has standard deviation jitter * sqrt(2/3) (8.2 ms at 10 ms), which adds in
  quadrature to the base RTT's own spread, measured at the same time on a twin path
  without jitter (under TCG that spread is as large as the jitter and drifts). The
  measured value must lie in [0.75, 1.33] x that: with 300 pings the sample SD's
  relative error is ~4% (1 sigma), so the band is over 6 sigma wide on either side.
- loss: 3 probes at the binomial 99.95% level (`linkcheck`), and netem's own drop
  counters must equal the packets the probe lost (nothing else crosses that link).
- goodput: >= 0.93 of the configured rate (headers alone take 4.4%), with a 10 ms
  token bucket (`network.shaper_burst_ms`). The bucket must cover how late the machine
  dequeues; under TCG in the CI guest the default 2 ms lost rate (0.91 at 50 Mb/s,
  0.83 at 100) and 10 ms gave 0.955 at both. A deeper bucket never lowers the rate, so
  on a fast machine this checks the same thing. The control arm is the same path
  unshaped, right before and right after: a rate is only checked where the machine
  forwarded at least 3x that much both times, since near its limit the CPU and not
  the shaper sets the pace (seen under TCG:
  at 100 Mb/s on a guest that forwards 114 Mb/s, 69 spurious retransmissions and no
  packet dropped anywhere cost 10% of the rate).

With the binomial probes, a correct kernel fails this file with probability ~0.15%.
"""

from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from testbed.network.measure import rtts_ms, tcp_transfer, udp_loss
from testbed.platform import probe
from tests.integration.linkcheck import assert_loss, session

PLATFORM = probe()
pytestmark = [pytest.mark.integration, pytest.mark.stock_kernel]
needs_netem = pytest.mark.skipif(
    not PLATFORM.netem, reason="sch_netem is not available on this kernel (`make vm-test` has it)"
)
needs_ovs_module = pytest.mark.skipif(
    not PLATFORM.ovs_kernel_module,
    reason="the openvswitch kernel module is not available (`make vm-test` has it)",
)

DUMBBELL = {"kind": "dumbbell", "hosts_per_side": 1}
FAT_TREE = {"kind": "fat-tree", "k": 4}
PINGS = 60
DELAY_MS = 20.0
LOSS_PROBE = 20_000
NETEM = {"loss_backend": "netem"}


def median_rtts(tmp_path, name: str, topology: dict, pairs: list[tuple[str, str]]) -> list[float]:
    """Median ping RTT (ms) of each pair, in one fresh network."""
    with session(tmp_path, name, topology) as tb:
        return [statistics.median(rtts_ms(tb.network, a, b, PINGS)) for a, b in pairs]


def assert_close(measured: float, expected: float, tolerance: float = 0.10) -> None:
    assert abs(measured - expected) <= tolerance * expected, (
        f"RTT {measured:.2f} ms, expected {expected:.2f} ms +- {100 * tolerance:.0f}%"
    )


# ---------------------------------------------------------------------------- netem


@needs_netem
def test_delay_on_one_link_adds_twice_per_round_trip(tmp_path):
    (base,) = median_rtts(tmp_path, "base", DUMBBELL, [("h1", "h2")])
    delayed = {**DUMBBELL, "tiers": {"bottleneck": {"delay_ms": DELAY_MS}}}
    (rtt,) = median_rtts(tmp_path, "delayed", delayed, [("h1", "h2")])
    assert_close(rtt, base + 2 * DELAY_MS)


@needs_netem
def test_delay_on_the_fat_tree_core_tier_adds_up_over_hops(tmp_path):
    """h1 -> h16 crosses agg->core and core->agg each way (4 delayed hops per round
    trip); h1 -> h3 stays in its pod and crosses no core link."""
    pairs = [("h1", "h16"), ("h1", "h3")]
    base_inter, base_intra = median_rtts(tmp_path, "base", FAT_TREE, pairs)
    delayed = {**FAT_TREE, "tiers": {"core": {"delay_ms": DELAY_MS}}}
    inter, intra = median_rtts(tmp_path, "delayed", delayed, pairs)
    assert_close(inter, base_inter + 4 * DELAY_MS)
    assert intra < base_intra + DELAY_MS / 2, f"intra-pod RTT {intra:.2f} ms got core delay"


@needs_netem
def test_jitter_spreads_rtts_as_configured(tmp_path):
    """h1 pings h3 (20 ms delay and 10 ms jitter each way on h3's link) and h4 (the
    same delay, no jitter) at the same time, in one network: both see the same
    scheduling noise, which under TCG can be as large as the jitter and drifts from
    minute to minute (a version that measured the two in turn saw 9.9 ms SD without
    jitter, then 8.5 ms with it). Where that noise exceeds the jitter's own SD, the
    jitter cannot be told from it and the test says so instead of passing."""
    jitter_ms, count = 10.0, 300
    topology = {
        "kind": "dumbbell",
        "hosts_per_side": 2,
        "directed": [
            {"src": src, "dst": dst, "delay_ms": 2 * jitter_ms, **extra}
            for a, b, extra in (("right", "h3", {"jitter_ms": jitter_ms}), ("right", "h4", {}))
            for src, dst in ((a, b), (b, a))
        ],
    }
    with session(tmp_path, "jitter", topology) as tb, ThreadPoolExecutor(2) as pool:
        runs = {dst: pool.submit(rtts_ms, tb.network, "h1", dst, count) for dst in ("h3", "h4")}
        spreads = {dst: statistics.stdev(run.result()) for dst, run in runs.items()}
    jitter_sd = jitter_ms * (2 / 3) ** 0.5  # crossed twice per round trip
    if spreads["h4"] > jitter_sd:
        pytest.skip(f"RTT SD without jitter is {spreads['h4']:.1f} ms, above the "
                    f"{jitter_sd:.1f} ms jitter would add: this machine is too noisy")  # fmt: skip
    expected = (jitter_sd**2 + spreads["h4"] ** 2) ** 0.5
    assert 0.75 * expected <= spreads["h3"] <= 1.33 * expected, (
        f"RTT SD {spreads['h3']:.2f} ms, expected {expected:.2f} ms "
        f"(without jitter, at the same time: {spreads['h4']:.2f} ms)"
    )


def netem_loss_probe(tmp_path, name: str, loss_pct: float, seed: int = 1):
    """UDP probe h1->h2 with netem loss on the bottleneck only; (probe, links report)."""
    topology = {**DUMBBELL, "tiers": {"bottleneck": {"loss_pct": loss_pct}}}
    with session(tmp_path, name, topology, network=NETEM, seed=seed) as tb:
        result = udp_loss(tb.network, "h1", "h2", count=LOSS_PROBE)
        links = tb.close()
    return result, {e["direction"]: e for e in links}


@needs_netem
@pytest.mark.parametrize("loss_pct", [1, 5, 10])
def test_netem_loss_matches_configured_rate(tmp_path, loss_pct):
    result, links = netem_loss_probe(tmp_path, f"loss{loss_pct}", loss_pct)
    assert_loss(result, loss_pct / 100)
    # netem's own counters saw exactly the packets the probe missed
    assert links["left->right"]["loss_drops"] == result.sent - result.received
    assert links["left->right"]["configured_loss_pct"] == loss_pct


@pytest.mark.skipif(
    not PLATFORM.netem_seed,
    reason="netem cannot be seeded here (it needs sch_netem, Linux >= 6.6 and its tc)",
)
def test_netem_seed_repeats_the_same_drops(tmp_path):
    first, _ = netem_loss_probe(tmp_path, "seed1a", 10, seed=1)
    again, _ = netem_loss_probe(tmp_path, "seed1b", 10, seed=1)
    other, _ = netem_loss_probe(tmp_path, "seed2", 10, seed=2)
    assert first.lost_digest == again.lost_digest
    assert first.lost_digest != other.lost_digest  # the control: the seed is what decides


# ------------------------------------------------------------------ kernel datapath


@needs_ovs_module
def test_quickstart_trains_on_the_kernel_datapath(quickstart):
    """The smoke tier's quickstart run (`network.datapath: auto`, which is the kernel
    datapath exactly when the module is loaded; unit-tested in test_platform)."""
    proc, out, leaked = quickstart
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["platform"]["datapath"] == "kernel"
    jobs = pd.read_csv(out / "jobs.csv")
    assert jobs.loc[0, "status"] == "ok" and jobs.loc[0, "final_accuracy"] >= 0.8
    assert leaked == {}  # no datapath, bridge, interface, qdisc, process or ledger left


# The shaper's bucket must cover the guest's late dequeues (testbed/network/tc.py): a
# dequeue later than the bucket loses the tokens that overflow it, and TCP's goodput
# falls below the link's rate for a reason that is the CPU's, not the shaper's. With 10 ms,
# 50 Mb/s got 0.955 and 0.958 of the link in a TCG guest on a quiet host but 0.91 and 0.90
# in two CI runs (late dequeues on a busy host, we infer; not reproduced). 50 ms covers
# five times the lateness that 10 ms does, and costs the upper bound nothing: one bucket
# over the 5 s transfer is 1% on top of the header-limited 0.956, below the link's rate.
KERNEL_SHAPED = {"datapath": "kernel", "shaper_burst_ms": 50.0}
# How much faster than the link the machine must forward, before and after, for the
# shaper and not the CPU to set the rate. 2x was not enough under TCG: a guest that
# forwarded 257 and 270 Mb/s unshaped got 89.5 Mb/s through a 100 Mb/s shaper.
HEADROOM = 3
UNSHAPED_MBPS = 10_000.0  # the schema's maximum: far above what any datapath here forwards


def goodput(tmp_path, name: str, bw: float) -> float:
    topology = {**DUMBBELL, "link": {"bw_mbps": bw}}
    with session(tmp_path, name, topology, network=KERNEL_SHAPED) as tb:
        return tcp_transfer(tb.network, "h1", "h2", seconds=5).mbps


@needs_ovs_module
@pytest.mark.parametrize("bw", [10, 50, 100])
def test_tcp_goodput_on_the_kernel_datapath(tmp_path, bw):
    """The control arm, the same path unshaped, runs right before and right after the
    shaped one: a guest under TCG forwards 110-170 Mb/s and that capacity drifts within
    minutes (one CI run's module-wide capacity check passed, then 50 Mb/s got 44.8)."""
    capacity = [goodput(tmp_path, "unshaped-before", UNSHAPED_MBPS)]
    mbps = goodput(tmp_path, f"bw{bw}", bw)
    capacity.append(goodput(tmp_path, "unshaped-after", UNSHAPED_MBPS))
    if min(capacity) < HEADROOM * bw:
        pytest.skip(
            f"this machine forwarded {min(capacity):.0f} Mb/s unshaped around the test, less "
            f"than {HEADROOM}x {bw} Mb/s: the CPU, not the shaper, would set the rate (TCG?)"
        )
    assert 0.93 * bw <= mbps <= bw, f"{mbps:.1f} Mb/s on a {bw} Mb/s link (unshaped: {capacity})"
