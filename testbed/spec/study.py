"""A spec with ``sweep:``, ``zip:`` or ``repeats:`` -> the list of runs of a study.

    sweep:   {topology.tiers.bottleneck.loss_pct: [0, 5], jobs.0.transport: [tcp, blt]}
    zip:     {jobs.0.lr: [0.1, 0.05], jobs.0.iterations: [100, 200]}   # varied together
    repeats: 3                                                          # seeds seed+0..2

Keys are dotted paths, as ``--set`` takes them. ``zip:`` may also be a list of such
groups, each its own axis (say the models with their compute times, and PS/ring with
their worker counts). The sweep keys and the zip groups (each as one axis) are
expanded as a cartesian product, in the order written: the first key varies slowest.
Each point runs `repeats` times with seeds ``seed + i``. Every run's spec is validated
here, so a bad value in the fifth point is an error before the first point is built.
Nothing here needs root.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from testbed.errors import SpecError
from testbed.spec.labels import label
from testbed.spec.load import apply_overrides, parse_override, read_yaml, set_path, validate
from testbed.spec.reference import load_reference
from testbed.spec.schema import Experiment, Frozen, Int, Str

STUDY_KEYS = ("sweep", "zip", "repeats", "report")
# Distributions within a run that a study report can draw as CDFs, one line per arm.
CDFS = ("jobs.jct_s", "jobs.mean_iter_s", "links.bytes")


class StudyReport(Frozen):
    """What a study's report adds to each metric against each swept key."""

    # {swept key: value}: each metric also as a ratio to that arm's, at the same other
    # values and the same repeat (a paired ratio), e.g. {jobs.0.aggregation: none}; the
    # keys of a zipped axis together.
    relative_to: dict[str, Any] = {}
    # Distributions drawn as CDFs, one line per arm, pooled over repeats: the JCTs of a
    # run's jobs, or the bytes each link carried (links.bytes).
    cdf: tuple[Literal[CDFS], ...] = ()  # type: ignore[valid-type]
    # A paper's reference file (testbed.spec.reference), relative to the spec: the
    # report then puts our values beside the paper's, with verdicts.
    reference: Str | None = None


class StudyKeys(Frozen):
    """The study part of a spec (absent: a single run)."""

    sweep: dict[str, tuple[Any, ...]] = {}
    # One group of keys varied together, or a list of such groups (one axis each).
    zip: dict[str, tuple[Any, ...]] | tuple[dict[str, tuple[Any, ...]], ...] = {}
    repeats: Int = Field(1, ge=1, le=1000)
    report: StudyReport = StudyReport()

    @property
    def zips(self) -> tuple[dict[str, tuple[Any, ...]], ...]:
        """The zip groups, each one axis (none when `zip:` is absent)."""
        groups = (self.zip,) if isinstance(self.zip, dict) else self.zip
        return tuple(group for group in groups if group)

    @property
    def zipped(self) -> dict[str, tuple[Any, ...]]:
        """Every zipped key with its values, whatever its group."""
        return {key: values for group in self.zips for key, values in group.items()}


class StudySpec(Experiment, StudyKeys):
    """An experiment spec with its study keys: the whole of what a spec file may hold
    (`testbed schema` prints this model's JSON Schema)."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: a point of the sweep and one repeat of it."""

    name: str  # its run directory under the study directory: p003-r1
    point: int
    repeat: int
    seed: int
    values: dict[str, Any]  # swept key -> value at this point
    experiment: Experiment = field(compare=False)


@dataclass(frozen=True)
class Study:
    """A spec expanded into its runs."""

    source: str
    base: dict[str, Any]  # the spec without its study keys, --set applied
    keys: StudyKeys
    runs: list[PlannedRun]
    reference: Path | None = None  # the paper's reference file, validated

    @property
    def swept(self) -> list[str]:
        """Every swept key, in expansion order."""
        return [*self.keys.sweep, *self.keys.zipped]

    def as_yaml(self) -> str:
        """study.yaml: the spec and its expansion; enough to resume the study."""
        return yaml.safe_dump(
            {
                "source": self.source,
                "spec": {**self.base, **self.keys.model_dump(mode="json", exclude_defaults=True)},
                "runs": [
                    {
                        "name": r.name,
                        "point": r.point,
                        "repeat": r.repeat,
                        "seed": r.seed,
                        "values": r.values,
                    }  # fmt: skip
                    for r in self.runs
                ],
            },
            sort_keys=False,
        )


def is_study(raw: dict[str, Any], sweeps: Iterable[str] = ()) -> bool:
    """Whether a spec (as read) asks for more than one run."""
    return bool(raw.get("sweep") or raw.get("zip") or raw.get("repeats", 1) != 1 or list(sweeps))


def load_study(path: str, overrides: Iterable[str] = (), sweeps: Iterable[str] = ()) -> Study:
    """Read `path`, apply ``--set`` overrides and ``--sweep`` axes, expand and validate
    every run."""
    return expand(read_yaml(str(path)), str(path), overrides, sweeps)


def load_spec(
    path: str, overrides: Iterable[str] = (), sweeps: Iterable[str] = ()
) -> Experiment | Study:
    """A spec file as the command line gives it: the `Study` when, with its ``--set``
    overrides (``repeats``, ``sweep.KEY`` among them) and ``--sweep`` axes, it asks
    for more than one run; otherwise the validated `Experiment`."""
    raw = read_yaml(str(path))
    overridden = apply_overrides(raw, overrides, str(path))
    if is_study(raw, sweeps):
        return expand(raw, str(path), (), sweeps)
    return validate(raw, str(path), overridden)


def expand(
    raw: dict[str, Any], source: str, overrides: Iterable[str] = (), sweeps: Iterable[str] = ()
) -> Study:
    """The study a parsed spec describes (see the module docstring)."""
    raw = copy.deepcopy(raw)
    apply_overrides(raw, overrides, source)
    base = {k: v for k, v in raw.items() if k not in STUDY_KEYS}
    study = {k: raw[k] for k in STUDY_KEYS if k in raw}
    for item in sweeps:
        key, values = parse_override(item)
        if not isinstance(values, list) or not values:
            raise SpecError("--sweep", key, values, "expected a non-empty list, as KEY=[v1,v2]")
        study.setdefault("sweep", {})
        study["sweep"] = {**study["sweep"], key: values}
    keys = _study_keys(study, source)
    runs = []
    for point, values in enumerate(_points(keys, source)):
        for repeat in range(keys.repeats):
            runs.append(_plan(base, source, point, repeat, values))
    _check_relative_to(keys, source)
    study = Study(source, base, keys, runs)
    reference = _reference(keys.report, study.swept, keys.zips, source)
    return dataclasses.replace(study, reference=reference)


def _check_relative_to(keys: StudyKeys, source: str) -> None:
    """`report.relative_to` names swept keys and one of each one's values."""
    given = keys.report.relative_to
    values = {**keys.sweep, **keys.zipped}
    for key, value in given.items():
        if key not in values:
            raise SpecError(
                source, "report.relative_to", key, f"expected a swept key: {list(values)}"
            )
        if label(value) not in [label(v) for v in values[key]]:
            raise SpecError(source, f"report.relative_to.{key}", value,
                            f"expected one of its swept values: {list(values[key])}")  # fmt: skip
    for group in keys.zips:
        zipped = [k for k in group if k in given]
        if not zipped:
            continue
        # A zipped axis is one axis: naming part of it pairs no run with the baseline.
        at = {[label(v) for v in group[k]].index(label(given[k])) for k in zipped}
        if len(zipped) != len(group) or len(at) != 1:
            whole = {k: group[k][min(at)] for k in group}
            raise SpecError(source, "report.relative_to", dict(given),
                            f"the whole zipped axis at one position, e.g. {whole}")  # fmt: skip


def _reference(
    report: StudyReport, swept: list[str], zips: tuple[dict, ...], source: str
) -> Path | None:
    """The reference file's path, after validating it (before anything runs)."""
    if report.reference is None:
        return None
    path = Path(source).parent / report.reference
    load_reference(path, swept, source, zips)
    return path


def _study_keys(study: dict[str, Any], source: str) -> StudyKeys:
    sweep = study.get("sweep", {})
    if not isinstance(sweep, dict):
        raise SpecError(source, "sweep", sweep, "expected a mapping of KEY.PATH: [values]")
    _check_axes(sweep, "sweep", set(), source)
    zipped = study.get("zip", {})
    groups = [zipped] if isinstance(zipped, dict) else zipped
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise SpecError(source, "zip", zipped, "expected a mapping of KEY.PATH: [values], "
                        "or a list of such mappings")  # fmt: skip
    seen = set(sweep)
    for i, group in enumerate(groups):
        where = "zip" if isinstance(zipped, dict) else f"zip.{i}"
        _check_axes(group, where, seen, source)
        if len({len(v) for v in group.values()}) > 1:
            lengths = sorted({len(v) for v in group.values()})
            raise SpecError(source, where, lengths, "expected lists of one length")
        seen |= set(group)
    try:
        return StudyKeys.model_validate(study)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise SpecError(source, where, err.get("input"), err["msg"]) from None


def _check_axes(section: dict[str, Any], where: str, seen: set[str], source: str) -> None:
    """`sweep:` or one zip group: non-empty lists, of keys no other axis varies."""
    for path, values in section.items():
        if not isinstance(values, list) or not values:
            raise SpecError(source, f"{where}.{path}", values, "expected a non-empty list")
        if path in STUDY_KEYS or path.split(".")[0] in STUDY_KEYS:
            raise SpecError(source, f"{where}.{path}", values, "a study key cannot be swept")
        if path in seen:
            raise SpecError(source, f"{where}.{path}", values, "already swept on another axis")


def _points(keys: StudyKeys, source: str) -> list[dict[str, Any]]:
    axes = [[{k: v} for v in values] for k, values in keys.sweep.items()]
    for group in keys.zips:
        columns = list(group.items())
        axes.append([{k: vs[i] for k, vs in columns} for i in range(len(columns[0][1]))])
    return [_merge(combo) for combo in itertools.product(*axes)]


def _merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _plan(
    base: dict[str, Any], source: str, point: int, repeat: int, values: dict[str, Any]
) -> PlannedRun:
    raw = copy.deepcopy(base)
    for key, value in values.items():
        set_path(raw, key, copy.deepcopy(value), f"{source} (sweep)")
    seed = raw.get("seed", Experiment.model_fields["seed"].default)
    if isinstance(seed, int) and not isinstance(seed, bool):
        raw["seed"] = seed + repeat
    exp = validate(raw, f"{source} (point {point})", values, by="sweep")
    return PlannedRun(f"p{point:03d}-r{repeat}", point, repeat, exp.seed, values, exp)
