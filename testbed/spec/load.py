"""YAML file + ``--set`` overrides -> validated, frozen `Experiment`.

Nothing here needs root or touches the system; every problem becomes one
`SpecError` line before anything is built.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from testbed.errors import NO_VALUE, SpecError
from testbed.spec.rules import check_rules
from testbed.spec.schema import Experiment


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> Experiment:
    """Read `path`, apply ``key.path=value`` overrides, validate, return the experiment."""
    source = str(path)
    raw = read_yaml(source)
    overridden = apply_overrides(raw, overrides, source)
    return validate(raw, source, overridden)


# Study keys whose entries are themselves dotted paths: `--set sweep.jobs.0.lr=[..]`
# names the swept key `jobs.0.lr`, not a path into the sweep mapping.
PATH_KEYED = ("sweep", "zip")


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], source: str) -> list[str]:
    """Apply ``--set KEY=VALUE`` items to `raw` in order; return the keys set.

    Any key of a spec file can be set, the study keys included: ``repeats=3``,
    ``sweep.jobs.0.lr=[0.1,0.2]`` (one swept key), ``sweep={...}`` (the whole axis)."""
    keys = []
    for item in overrides:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        if head in PATH_KEYED and rest:
            section = raw.setdefault(head, {})
            if not isinstance(section, dict):
                raise SpecError(f"{source} (--set)", head, section, "expected a mapping here")
            section[rest] = value
        else:
            set_path(raw, key, value, source)
        keys.append(key)
    return keys


def read_yaml(source: str) -> dict[str, Any]:
    """The spec file as a mapping, or a one-line `SpecError`."""
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise SpecError(source, "", NO_VALUE, f"cannot read file ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            source,
            f"line {line}",
            NO_VALUE,
            f"expected UTF-8 text (byte {exc.start}: 0x{data[exc.start]:02x})",
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(source, where, NO_VALUE, f"YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(source, "", NO_VALUE, "expected a YAML mapping at the top level")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``jobs.0.transport=tcp`` -> ("jobs.0.transport", "tcp"); values are YAML scalars."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set", "", item, "expected KEY.PATH=VALUE")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise SpecError("--set", key.strip(), text, "expected a YAML value") from None
    return key.strip(), value


# Keys a spec may give as their union's tag alone (see JobSpec._shorthands).
SHORTHAND_TAGS = {"transport": "kind", "model": "name"}


def set_path(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `value` at dotted `key` in `raw`; list items are addressed by index, or all
    of them by `*` (``jobs.*.aggregation``: every job's)."""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list) and part == "*":
            rest = ".".join(parts[depth + 1 :])
            for i, item in enumerate(node):
                if last:
                    node[i] = copy.deepcopy(value)
                else:
                    set_path(item, rest, copy.deepcopy(value), source)
            return
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(
                    f"{source} (--set)", where, part, f"expected an index < {len(node)} or *"
                )
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and isinstance(node.get(part), str) and part in SHORTHAND_TAGS:
                node[part] = {SHORTHAND_TAGS[part]: node[part]}  # transport: blt -> {kind: blt}
            elif not last and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
        else:
            raise SpecError(f"{source} (--set)", where, node, "expected a mapping or list here")
        if last:
            node[index] = value
        else:
            node = node[index]


def validate(
    raw: Mapping[str, Any], source: str, overridden: Iterable[str] = (), by: str = "--set"
) -> Experiment:
    """Schema and cross-field validation of an already-parsed spec. An error at a key
    in `overridden` names what set it (`by`: ``--set``, ``sweep``)."""
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise _spec_error(exc, raw, source, list(overridden), by) from None
    check_rules(experiment, source)
    return experiment


# ------------------------------------------------------------ error translation


def _spec_error(
    exc: ValidationError, raw: Mapping[str, Any], source: str, overridden: list[str], by: str
) -> SpecError:
    """Turn pydantic's error list into one line about the most specific problem."""
    cleaned = [(_user_path(err["loc"], raw), err) for err in exc.errors()]
    # An error on a container is often only the echo of one inside it (a tuple of
    # jobs "too short" because its only job failed): keep the innermost ones.
    cleaned = [
        (path, err)
        for path, err in cleaned
        if not any(len(other) > len(path) and other[: len(path)] == path for other, _ in cleaned)
    ]
    # The longest key path is the most specific: for unions pydantic reports one
    # error per member and the deepest one is the one the user meant.
    path, err = max(cleaned, key=lambda item: len(item[0]))
    value = NO_VALUE if err["type"] == "missing" else err.get("input", NO_VALUE)
    if err["type"] == "union_tag_invalid":
        value = err["ctx"]["tag"]
        if isinstance(_node(raw, path), dict):  # point at the tag key itself
            path = [*path, err["ctx"]["discriminator"].strip("'")]
    dotted = ".".join(str(p) for p in path)
    expected = _expected(err, raw, path)
    others = len({".".join(map(str, p)) for p, _ in cleaned}) - 1
    if others > 0:
        expected += f" (and {others} more problem{'s' if others > 1 else ''})"
    hit = [key for key in overridden if dotted == key or dotted.startswith(key + ".")]
    if hit:
        source = f"{source} ({by} {hit[0]})"
    return SpecError(source, dotted, value, expected)


def _node(raw: Any, path: list[Any]) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _user_path(loc: tuple[Any, ...], raw: Any) -> list[Any]:
    """Drop pydantic's union-member labels from `loc`, keeping keys the user wrote."""
    path: list[Any] = []
    node = raw
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif last and isinstance(part, (str, int)) and not _is_label(part):
            path.append(part)  # a missing key: name it
    return path


def _is_label(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or "-" in part or part in _UNION_TAGS)


# Tags of discriminated unions appear in locations but never as keys a user typed.
_UNION_TAGS = {"mlp", "cnn", "tcp", "blt", "gloo", "mf", "lstm", "iperf3", "flows"}


def _expected(err: Mapping[str, Any], raw: Mapping[str, Any], path: list[Any]) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key" + _allowed_hint(raw, path[:-1])
    if kind == "missing":
        return "missing required key"
    if kind == "union_tag_invalid":
        return f"expected one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"missing key {ctx.get('discriminator', 'kind')}"
    if kind in _BOUNDS:
        return f"expected a value {_BOUNDS[kind]} {_number(next(iter(ctx.values())))}"
    for prefix, replacement in _PHRASES:
        if msg.startswith(prefix):
            return replacement + msg[len(prefix) :]
    return msg


_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}
_PHRASES = (
    ("Value error, ", ""),
    ("Input should be a valid ", "expected a "),
    ("Input should be ", "expected "),
    ("String should match pattern ", "expected text matching "),
    ("List should have at least ", "expected at least "),
    ("Tuple should have at least ", "expected at least "),
)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _allowed_hint(raw: Mapping[str, Any], parent: list[Any]) -> str:
    """ "; expected one of: ..." listing the keys valid at `parent`."""
    node: Any = raw
    cls: Any = Experiment
    for part in parent:
        node = node[part]
        if isinstance(part, str):
            field = cls.model_fields.get(part)
            if field is None:  # a key of a mapping (tiers.<name>): the model is its value's
                continue
            cls = _model_in(field.annotation, node)
            if cls is None:
                return ""
    return f"; expected one of: {', '.join(sorted(cls.model_fields))}"


def schema_models(annotation: Any) -> list[type[BaseModel]]:
    """Every schema class inside `annotation` (a union, a tuple, a mapping...)."""
    found, stack = [], [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            found.append(item)
        else:
            stack.extend(typing.get_args(item))
    return found


def _model_in(annotation: Any, node: Any) -> Any:
    """The schema class inside `annotation` (a union, tuple, ...) that `node` means."""
    found = schema_models(annotation)
    for cls in found:  # a discriminated union: pick the member named by the tag
        for tag in ("kind", "name"):
            field = cls.model_fields.get(tag)
            if (
                field
                and isinstance(node, dict)
                and node.get(tag) in typing.get_args(field.annotation)
            ):
                return cls
    return found[0] if found else None
