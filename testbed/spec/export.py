"""The spec's JSON Schema, generated from the pydantic models (`testbed schema`).

Editors use it to complete and check spec files; VS Code's YAML extension, for one,
reads ``# yaml-language-server: $schema=<path>`` at the top of a file. pydantic cannot
see the shorthands the models accept before validation (``model: mlp`` for
``model: {name: mlp}``, ``transport: tcp`` for ``transport: {kind: tcp}``), so they
are added here.
"""

from __future__ import annotations

from typing import Any, get_args

from testbed.spec.schema import MODEL_DATASETS, TransportSpec
from testbed.spec.study import StudySpec

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def spec_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) that every valid spec file satisfies."""
    schema = StudySpec.model_json_schema()
    job = schema["$defs"]["JobSpec"]["properties"]
    transports = [get_args(m.model_fields["kind"].annotation)[0] for m in _members(TransportSpec)]
    _allow_word(job["model"], sorted(MODEL_DATASETS))
    _allow_word(job["transport"], transports)
    return {"$schema": SCHEMA_URI, **schema, "title": "mlnet-testbed experiment spec"}


def _members(union: Any) -> list[Any]:
    return list(get_args(get_args(union)[0]))


def _allow_word(prop: dict[str, Any], words: list[str]) -> None:
    """Let a discriminated-union property also be given as the tag alone."""
    prop["oneOf"] = [*prop["oneOf"], {"type": "string", "enum": words}]
