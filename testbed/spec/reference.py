"""A paper's figure as a study's reference: its numbers as read off the figure, and
the headline claims with the rule that decides whether ours reproduce them.

A reference file (``configs/papers/<paper>/<figure>.ref.yaml``) sits beside the study
spec that sets the figure up, which names it (``report: {reference: ...}``). It holds
only facts and figures: where they come from, how they are normalised, the paper's
values, and per claim a rule on our value. The study copies it into its directory
(``reference.yaml``), so that the report needs nothing else. See
`testbed.study.against` for how our values are computed, and configs/papers/ for the
files.

Quantities. Every value is computed per repeat from the study's runs and then
averaged (with its 95% confidence interval over repeats, t-based):

- the arm: the study's runs whose swept keys have the values in `at` (every swept
  key the study varies must be named; of a zip group, enough of its keys to pick one
  position, say `jobs.0.name` alone where each job has its own);
- the metric in that run (the quantity's own `metric`, else the reference's): a
  column of jobs.csv for the study's one job (`statistic` ignored), or a statistic
  over a distribution of the run: over its jobs (``jobs.<column>``) or over its
  links (``links.bytes``, link_bytes.csv with both directions of a link added, idle
  links left out); with `per`, divided by that jobs.csv column of the same run;
- divided by the same of the baseline arm (`normalise`: the swept key, or the keys of
  one zipped axis, and the baseline's values; the other keys as at this point) of the
  same repeat, or of `over` (`at` with these keys changed), or by nothing
  (``normalised: false``).

Verdicts. A claim is `reproduced` when our mean lies in its `reproduced` range,
`opposite` when it lies in its `opposite` range (the other side of "no change"), and
`not reproduced` otherwise; no claim is decided by anything but its written rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from testbed.errors import NO_VALUE, SpecError
from testbed.layout import REFERENCE
from testbed.spec.labels import label
from testbed.spec.schema import Float, Frozen, Int, Str

REFERENCE_FILE = REFERENCE  # the study's copy, in its directory (results.layout)
Scalar = str | int | float | bool
# A swept key's value: a scalar, or a mapping swept whole (a transport such as
# {kind: blt, loss_bound: 0.15}), matched by its label in runs.csv.
Value = Scalar | dict[str, Scalar]
Range = tuple[float, float]
DISTRIBUTIONS = ("jobs.", "links.")


def check_metric(metric: str) -> str:
    """A metric is a jobs.csv column, jobs.<column> or links.bytes."""
    if metric.startswith(DISTRIBUTIONS[1]) and metric != "links.bytes":
        raise ValueError("expected links.bytes, jobs.<column> or a jobs.csv column")
    return metric


class Quantity(Frozen):
    """One of our values (see the module docstring)."""

    at: dict[str, Value]
    statistic: Literal["mean", "median", "p95"] = "mean"
    over: dict[str, Value] | None = None
    normalised: bool = True
    metric: Str | None = None  # this quantity's own metric; default: the reference's
    # Each run's metric divided by this jobs.csv column of the same run (APNet's Table 1:
    # eq. 1's JCT with the tail FCT per the same with the average FCT).
    per: Str | None = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str | None) -> str | None:
        return metric if metric is None else check_metric(metric)

    @field_validator("per")
    @classmethod
    def _per(cls, per: str | None) -> str | None:
        if per is not None and per.startswith(DISTRIBUTIONS):
            raise ValueError("expected a jobs.csv column")
        return per


class Point(Quantity):
    """One point of the paper's figure, beside ours at the same place."""

    panel: Str = ""
    series: Str
    x: Float  # on the paper's axis
    paper: Float


class Claim(Quantity):
    """A headline claim, the paper's number for it (or its words, "> 1", where the
    figure gives no number), and the rule for ours."""

    claim: Str
    paper: Float | Str
    reproduced: Range
    opposite: Range | None = None

    @field_validator("reproduced", "opposite")
    @classmethod
    def _ordered(cls, r: Range | None) -> Range | None:
        if r is not None and r[0] > r[1]:
            raise ValueError("expected [low, high] with low <= high")
        return r


class Reference(Frozen):
    """A reference file."""

    paper: Str
    figure: Str
    page: Int | None = Field(None, ge=1)  # None: not recorded where the values were read
    source: Str  # where the values were read off (the figure, or a transcription of it)
    metric: Str  # a jobs.csv column, or jobs.<column> / links.bytes (a distribution)
    normalise: dict[str, Value]  # swept key(s) -> the baseline arm's value(s)
    meaning: Str  # what the normalised value means, in the paper's words for its axis
    x_label: Str  # the paper's x axis, units included
    y_label: Str  # the paper's y axis, as normalised
    cdf: bool = False  # the paper shows a CDF over the distribution
    points: tuple[Point, ...] = ()
    claims: tuple[Claim, ...] = Field(min_length=1)
    not_kept: tuple[Str, ...] = ()  # what our setup could not keep of the paper's

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        return check_metric(metric)

    @property
    def distribution(self) -> str | None:
        """'jobs' or 'links' when the metric is a distribution within a run."""
        return self.metric.split(".")[0] if self.metric.startswith(DISTRIBUTIONS) else None

    @property
    def column(self) -> str:
        return self.metric.split(".", 1)[1] if self.distribution else self.metric


def load_reference(
    path: Path, swept: list[str], source: str, zips: Sequence[dict[str, Sequence]] = ()
) -> Reference:
    """The reference file at `path`, validated against the study's swept keys (`zips`:
    its zip groups, key -> values); one `SpecError` line (file, key, value, expected)
    for anything wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, "report.reference", str(path), f"a readable file ({exc})") from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), "", NO_VALUE, f"YAML syntax error: {exc}") from None
    try:
        ref = Reference.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SpecError(str(path), where, err.get("input", NO_VALUE), err["msg"]) from None
    _check_keys(ref, swept, str(path), zips)
    return ref


def _check_keys(
    ref: Reference, swept: list[str], where: str, zips: Sequence[dict[str, Sequence]]
) -> None:
    """Every selection names swept keys only, and together with `normalise` all of them."""
    if not ref.normalise or any(key not in swept for key in ref.normalise):
        raise SpecError(where, "normalise", dict(ref.normalise), f"expected swept keys: {swept}")
    if ref.cdf and set(ref.normalise) != set(swept):
        # A CDF is drawn over one baseline arm's median; pooling several arms would
        # normalise by a median of none of them.
        raise SpecError(
            where, "normalise", dict(ref.normalise), f"with cdf: true, a value for each of {swept}"
        )
    items: list[tuple[str, Any]] = [(f"points.{i}", p) for i, p in enumerate(ref.points)]
    items += [(f"claims.{i}", c) for i, c in enumerate(ref.claims)]
    for path, q in items:
        for key in [*q.at, *(q.over or {})]:
            if key not in swept:
                raise SpecError(where, f"{path}.at", key, f"expected a swept key: {swept}")
        zipped = {key for group in zips for key in group}
        missing = [k for k in swept if k not in q.at and k not in zipped]
        if missing:
            raise SpecError(where, f"{path}.at", dict(q.at), f"expected values for {missing}")
        for group in zips:
            # None picks no run (a point the study was shrunk not to run, as a swept
            # value left out); two or more would pool different arms into one value.
            if len(_positions(group, q.at)) > 1:
                expected = f"values that pick one position of the zip group {list(group)}"
                raise SpecError(where, f"{path}.at", dict(q.at), expected)


def _positions(group: dict[str, Sequence], at: dict[str, Any]) -> list[int]:
    """The positions of a zip group whose values match every key of it that `at` names
    (all of them when it names none)."""
    named = [key for key in group if key in at]
    count = len(next(iter(group.values())))
    return [i for i in range(count) if all(_same(group[k][i], at[k]) for k in named)]


def _same(a: Any, b: Any) -> bool:
    """One swept value (numbers as numbers, 0.1 and 0.10 alike; mappings by label)."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return label(a) == label(b)
