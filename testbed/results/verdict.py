"""Whether a run's figures may enter a statistic, a ratio or a plot: it ended ``ok``
and its fidelity verdict (metadata.json ``fidelity``) trusts it as a network
measurement. Studies and benchmarks ask here, so the rule is written once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.layout import RunPaths
from testbed.results.read import read_json


@dataclass(frozen=True)
class Verdict:
    """A run's status and fidelity verdict, from its metadata.json."""

    status: str  # ok | failed | interrupted | missing (never started)
    error: str = ""
    trustworthy: bool | None = None  # None: never assessed (the run ended early)
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def usable(self) -> bool:
        """Ended ok and trusted: its figures may be compared."""
        return self.ok and self.trustworthy is True

    def why_not(self) -> str:
        """Why the run's figures are left out ('' when usable)."""
        if not self.ok:
            return f"run {self.status}" + (f": {self.error}" if self.error else "")
        if self.trustworthy is None:
            return "no fidelity verdict"
        if not self.trustworthy:
            return "untrustworthy: " + "; ".join(self.reasons)
        return ""


def read_verdict(run_dir: Path) -> Verdict:
    """The verdict of `run_dir` (status `missing` when it has no metadata.json)."""
    meta = read_json(RunPaths(run_dir).metadata)
    fidelity = meta.get("fidelity") or {}
    return Verdict(
        status=meta.get("status", "missing"),
        error=meta.get("error") or "",
        trustworthy=fidelity.get("trustworthy"),
        reasons=tuple(fidelity.get("reasons", ())),
    )


def ratio_cell(value: float, base: float, *verdicts: Verdict, digits: int = 2) -> str:
    """'1.23x' when every run behind the two figures is usable; otherwise '-' and
    why (a benchmark prints no ratio from a failed or untrustworthy run)."""
    for verdict in verdicts:
        if not verdict.usable:
            return "- (" + ("untrustworthy" if verdict.ok else f"not ok: {verdict.status}") + ")"
    return f"{value / base:.{digits}f}x"
