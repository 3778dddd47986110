"""Helpers shared by the link-emulation tests (`test_links`, `test_stock_kernel`).

Statistical rule: a probe's n datagrams cross directions that each drop
independently with probability p, so the number lost is Binomial(n, q) with
q = 1 - (1-p)^hops. A count is accepted inside the binomial 1 - 0.05%/P interval,
where P is the number of forwarding planes the tests run on here (`PLANES`), so each
probe fails a correct emulator with probability 0.05%/P and a check made on every
plane with 0.05% in all; each test module says how many probes it makes, and the
README's "Tests" section adds them up (the suite's total stays below 1%).
"""

from __future__ import annotations

from scipy.stats import binom, chi2

from testbed.network.measure import UdpLoss
from testbed.runner import Testbed, bare_testbed
from tests.integration.conftest import PLANES

CONFIDENCE = 1 - 0.0005 / len(PLANES)


def session(
    tmp_path,
    name: str,
    topology: dict,
    network: dict | None = None,
    seed: int = 1,
    ports: str = "auto",
) -> Testbed:
    """An unstarted testbed with no training job, for probing links (``with ... as tb``),
    on the forwarding plane `ports`."""
    network = {**(network or {}), "ports": ports}
    spec = {"name": name, "seed": seed, "topology": topology, "network": network,
            "jobs": [{"name": "idle", "workers": 1}]}  # fmt: skip
    return bare_testbed(spec, tmp_path / name, "test")


def assert_loss(probe: UdpLoss, q: float) -> None:
    """The probe lost a Binomial(n, q) count, and only on the links: a receiver that
    could not keep up would drop datagrams in its own socket buffer instead."""
    assert probe.receiver_drops == 0, f"receiver socket dropped {probe.receiver_drops} datagrams"
    lost, n = probe.sent - probe.received, probe.sent
    lo, hi = binom.interval(CONFIDENCE, n, q)
    assert lo <= lost <= hi, (
        f"lost {lost}/{n} = {lost / n:.4f}; expected {q:.4f} "
        f"({100 * CONFIDENCE:g}%: {lo:.0f}..{hi:.0f})"
    )


def assert_directions(entries: list[dict]) -> None:
    """Every direction's emulator counters (metadata.json ``links``) agree with its
    configured loss. The m directions form one family: each is held to the 1 - 0.05%/m
    interval (Bonferroni), so the family fails a correct emulator with at most 0.05%
    (metadata.json's fidelity flag does the same at a family-wise 99%)."""
    assert entries, "no lossy direction carried traffic"
    level = 1 - (1 - CONFIDENCE) / len(entries)
    for e in entries:
        n, p = e["offered_packets"], e["configured_loss_pct"] / 100
        lo, hi = binom.interval(level, n, p)
        assert lo <= e["loss_drops"] <= hi, f"{e['direction']}: {e['loss_drops']}/{n} lost, p={p}"


def assert_dispersion(entries: list[dict]) -> None:
    """Loss is independent per packet: over m directions, the sum of the squared
    standardized loss counts z = (lost - np) / sqrt(np(1-p)) is chi-square with m
    degrees of freedom (each count binomial given its n; np >= 50 keeps the normal
    approximation good). Accepted inside the two-sided 99.95% range, so a correct
    emulator fails it with probability 0.05%. Bursty or correlated loss inflates it
    (overdispersion); loss that is too regular, e.g. every 20th packet, deflates it."""
    z2 = 0.0
    for e in entries:
        n, p = e["offered_packets"], e["configured_loss_pct"] / 100
        assert n * p >= 50, f"{e['direction']}: too few packets ({n}) for the approximation"
        z2 += (e["loss_drops"] - n * p) ** 2 / (n * p * (1 - p))
    lo, hi = chi2.interval(CONFIDENCE, len(entries))
    assert lo <= z2 <= hi, (
        f"sum of z^2 over {len(entries)} directions: {z2:.1f}, expected {lo:.1f}..{hi:.1f}"
    )
