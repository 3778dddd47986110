"""Experiment spec: YAML -> validated, frozen objects (no root, no side effects)."""

from testbed.spec.load import load_experiment, parse_override, validate
from testbed.spec.schema import Experiment, JobSpec, LinkParams

__all__ = ["Experiment", "JobSpec", "LinkParams", "load_experiment", "parse_override", "validate"]
