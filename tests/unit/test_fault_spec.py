"""Spec rules of faults and of on_failure: every bad value is one SpecError line
naming the key, found before anything is built; a valid spec survives its own
resolved spec.yaml."""

from __future__ import annotations

import pytest
import yaml

from testbed.errors import SpecError
from testbed.spec import load_experiment, validate

JOB = {"name": "j", "workers": 3}


def spec(faults=(), **job) -> dict:
    return {"name": "t", "jobs": [{**JOB, **job}], "faults": list(faults)}


@pytest.mark.parametrize(
    "faults,job,key,expected",
    [
        ([{"at_s": 1.0}], {}, "faults.0", "expected exactly one of the keys link, switch"),
        ([{"link": ["a0_0", "c1_1"], "host": "h1", "action": "down", "at_s": 1}], {},
         "faults.0", "expected exactly one of the keys"),
        ([{"link": ["a0_0", "e1_0"], "action": "down", "at_s": 1}], {},
         "faults.0.link.1", "expected a neighbour of a0_0 (c1_1, c1_2, e0_0, e0_1)"),
        ([{"link": ["zz", "c1_1"], "action": "down", "at_s": 1}], {},
         "faults.0.link.0", "expected a switch or host of the topology"),
        ([{"switch": "c9_9", "action": "down", "at_s": 1}], {},
         "faults.0.switch", "expected a switch of the topology"),
        ([{"host": "h16", "action": "kill", "at_s": 1}], {},
         "faults.0.host", "expected a host a job runs on (h1, h5, h9, h13)"),
        ([{"host": "h1", "action": "down", "at_s": 1}], {}, "faults.0.action", "expected 'kill'"),
        ([{"controller": "kill", "at_s": -1.0}], {}, "faults.0.at_s", "expected a value >= 0"),
        ([{"link": ["a0_0", "c1_1"], "action": "cut", "at_s": 1}], {},
         "faults.0.action", "expected 'down' or 'up'"),
        ([], {"worker_timeout_s": 3.0}, "jobs.0.worker_timeout_s",
         "expected only with on_failure: continue"),
        ([], {"on_failure": "continue", "sync": "allreduce"}, "jobs.0.on_failure",
         "expected fail for sync allreduce"),
        ([], {"on_failure": "continue", "aggregation": "rack"}, "jobs.0.on_failure",
         "expected fail for aggregation rack"),
        ([], {"on_failure": "continue", "workers": 1}, "jobs.0.on_failure",
         "expected fail for one worker"),
        ([], {"on_failure": "continue", "transport": "gloo", "sync": "allreduce"},
         "jobs.0.on_failure", "expected fail for"),
        ([], {"on_failure": "maybe"}, "jobs.0.on_failure", "expected 'fail' or 'continue'"),
    ],
)  # fmt: skip
def test_bad_faults_name_the_key(faults, job, key, expected):
    with pytest.raises(SpecError) as err:
        validate(spec(faults, **job), "t.yaml")
    message = str(err.value)
    assert message.startswith(f"t.yaml: {key}") and expected in message, message
    assert "\n" not in message


def test_a_valid_fault_spec_round_trips_through_its_resolved_yaml(tmp_path):
    faults = [
        {"link": ["a0_0", "c1_1"], "action": "down", "at_s": 2},
        {"link": ["c1_1", "a0_0"], "action": "up", "at_s": 4.5},
        {"switch": "a1_0", "action": "down", "at_s": 5},
        {"host": "h5", "action": "kill", "at_s": 6},
        {"controller": "kill", "at_s": 7},
        {"link": ["h1", "e0_0"], "action": "down", "at_s": 8},  # a host's only link is allowed
    ]
    exp = validate(spec(faults, on_failure="continue", worker_timeout_s=2.0), "t.yaml")
    assert [type(f).__name__ for f in exp.faults] == [
        "LinkFault", "LinkFault", "SwitchFault", "HostFault", "ControllerFault", "LinkFault",
    ]  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    assert load_experiment(path) == exp
