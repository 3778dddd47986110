"""Cookies of the per-job accounting entries (`controllers.accounting`), shared with the
harness that reads their counters (`testbed.network.counters`). Plain Python, no
os-ken: the harness imports it without starting a controller."""

from __future__ import annotations

ACCOUNT_TAG = 0x4143 << 48  # "AC"
ACCOUNT_MASK = 0xFFFF << 48
# Tier codes: every tier any topology has (topologies/*.py).
TIERS = ("host", "edge", "core", "fabric", "bottleneck")


def account_cookie(tier: str, job_index: int) -> int:
    """Cookie of an entry counting job `job_index`'s bytes on links of `tier`."""
    return ACCOUNT_TAG | (TIERS.index(tier) << 16) | job_index


def parse_account_cookie(cookie: int) -> tuple[str, int] | None:
    """(tier, job index) of an accounting cookie, None for any other cookie."""
    if cookie & ACCOUNT_MASK != ACCOUNT_TAG:
        return None
    return TIERS[(cookie >> 16) & 0xFF], cookie & 0xFFFF
