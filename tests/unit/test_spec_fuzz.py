"""Property: whatever a spec file holds, the loader gives a valid `Experiment` or one
`SpecError`, never another exception (FAUCET fuzzes its config loader the same way).

The generator starts from every shipped config (so most of the key paths it mutates
exist and cross-field rules get exercised) and applies random mutations: a value from a
pool of every type YAML can produce, a deleted key, an unknown key. Key paths come from
the schema itself, so new keys are fuzzed as soon as they exist. A second property
feeds raw YAML text, including the edge cases of YAML 1.1 (`yes`, `~`, `0x10`, `.inf`,
anchors, tags, tabs).
"""

from __future__ import annotations

import copy
import glob
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from testbed.errors import SpecError
from testbed.spec import load_experiment, validate
from testbed.spec.load import schema_models
from testbed.spec.schema import Experiment


def key_paths(model: type[BaseModel] = Experiment, prefix: tuple = (), depth: int = 0) -> list:
    """Every key path of the schema; list items are addressed as index 0."""
    paths = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        origin = typing.get_origin(field.annotation)
        is_list = origin is tuple or any(
            typing.get_origin(a) is tuple for a in typing.get_args(field.annotation)
        )
        for sub in schema_models(field.annotation) if depth < 4 else []:
            paths += key_paths(sub, (*path, 0) if is_list else path, depth + 1)
    return sorted(set(paths), key=str)


PATHS = key_paths()
BASES = [
    yaml.safe_load(Path(p).read_text())
    for p in sorted(glob.glob("configs/*.yaml"))
    if not {"sweep", "zip", "repeats"} & set(yaml.safe_load(Path(p).read_text()))
]
WORDS = [
    "h1",
    "h16",
    "h0",
    "fat-tree",
    "leaf-spine",
    "dumbbell",
    "tcp",
    "blt",
    "gloo",
    "mlp",
    "cnn",
    "lstm",
    "mf",
    "ps",
    "allreduce",
    "fixed",
    "las",
    "websearch",
    "flows",
    "iperf3",
    "{python}",
    "yes",
    "~",
    "0x10",
    ".inf",
    "-.inf",
    "1e3",
    "",
    " ",
    "a" * 300,
    "x; rm -rf /",
    "$(reboot)",
    "../../etc/passwd",
    "nul\x00l",
    "é",
    "all",
    "free",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(WORDS)), scalars, max_size=3),
)


@st.composite
def mutated_specs(draw) -> dict:
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        node = spec
        for part in path[:-1]:
            if isinstance(part, int):
                if not isinstance(node, list) or not node:
                    break
                node = node[0]
            elif isinstance(node, dict):
                node = node.setdefault(part, {} if not isinstance(node.get(part), list) else [])
                if isinstance(node, list) and not node:
                    node.append({})
            else:
                break
        else:
            if not isinstance(node, dict):
                continue
            key = path[-1]
            if action == "delete":
                node.pop(key, None)
            elif action == "unknown":
                node[draw(st.text(min_size=1, max_size=8))] = draw(values)
            else:
                node[key] = draw(values)
    return spec


SETTINGS = settings(
    max_examples=5000,
    deadline=None,
    derandomize=True,  # the same 5000 specs every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(mutated_specs())
def test_any_mutated_spec_is_an_experiment_or_a_spec_error(spec):
    try:
        assert isinstance(validate(spec, "fuzz.yaml"), Experiment)
    except SpecError as exc:
        assert "\n" not in str(exc)  # one line, for the CLI


YAML_CASES = [
    "",
    "~",
    "- a\n- b",
    "name: [",
    "name: t\njobs: *a",
    "? [a]: b",
    "!!python/object:os.system x",
    "name: t\n\tjobs: []",
    "name: yes\njobs: [{name: a}]",
    "name: t\njobs: [{name: a, workers: 0x10}]",
    "name: t\njobs: [{name: a, lr: .inf}]",
    "{",
    "\x00",
    "name: t\njobs: [{name: a, k: &x 1, j: *x}]",
    "%YAML 1.1\n---\nname: t",
    "name: t\n---\nname: u",
    "a: 1\na: 2",
]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.sampled_from(YAML_CASES),
        st.text(max_size=80),
        # raw bytes: Latin-1 files, a UTF-16 BOM, cut-off multi-byte sequences
        st.sampled_from([b"name: caf\xe9\n", b"\xff\xfename: t", b"name: t\xc3"]),
        st.binary(max_size=80),
    )
)
def test_any_yaml_text_is_an_experiment_or_a_spec_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, errors="surrogateescape")
    try:
        load_experiment(path)
    except SpecError as exc:
        assert "\n" not in str(exc)
