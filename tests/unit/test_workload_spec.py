"""Spec rules of command jobs and background traffic: every bad value is one SpecError
line naming the key, found before anything is built."""

from __future__ import annotations

import sys

import pytest
import yaml

from testbed.errors import SpecError
from testbed.spec import load_experiment
from testbed.spec.job_rules import command_workdir, expand_command


def write(tmp_path, spec: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def command_spec(**job) -> dict:
    return {
        "name": "t",
        "jobs": [{"name": "c", "command": "{python} train.py --epochs 2", "workers": 4, **job}],
    }


@pytest.fixture
def script_dir(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    return tmp_path


def test_command_string_is_split_without_a_shell(script_dir):
    exp = load_experiment(write(script_dir, command_spec()))
    job = exp.jobs[0]
    assert job.command == ("{python}", "train.py", "--epochs", "2")
    assert expand_command(job.command)[0] == sys.executable
    assert job.servers == 0 and job.is_command
    assert command_workdir(job, str(script_dir / "spec.yaml")) == script_dir.resolve()


def test_shell_metacharacters_stay_one_argument(script_dir):
    spec = command_spec(command=["{python}", "train.py", "; rm -rf / && $(reboot)"])
    job = load_experiment(write(script_dir, spec)).jobs[0]
    assert job.command[2] == "; rm -rf / && $(reboot)"  # an argv element, never a shell's


def test_resolved_command_job_validates_again(script_dir):
    """spec.yaml of a run leaves out the built-in keys a command job cannot have."""
    exp = load_experiment(write(script_dir, command_spec(env={"A": "1"}, timeout_s=5)))
    dumped = exp.model_dump(mode="json")
    assert "model" not in dumped["jobs"][0] and "transport" not in dumped["jobs"][0]
    again = load_experiment(write(script_dir, dumped))
    assert again == exp


@pytest.mark.parametrize(
    "job,path,match",
    [
        ({"command": "no-such-program-xyz"}, "jobs.0.command.0", "on the PATH"),
        ({"command": "./train.py"}, "jobs.0.command.0", "executable file"),  # not +x
        ({"command": "{python} missing.py"}, "jobs.0.command.1", "expected a Python file"),
        ({"command": "a 'b"}, "jobs.0.command", "shlex"),
        ({"command": []}, "jobs.0.command", "at least 1"),
        ({"model": "mlp"}, "jobs.0.model", "not allowed with command"),
        ({"transport": "blt"}, "jobs.0.transport", "not allowed with command"),
        ({"servers": 1}, "jobs.0.servers", "not allowed with command"),
        ({"lr": 0.5}, "jobs.0.lr", "not allowed with command"),
        ({"workdir": "nowhere"}, "jobs.0.workdir", "existing directory"),
        ({"env": {"1BAD": "x"}}, "jobs.0.env", "expected text matching"),
        ({"timeout_s": 0}, "jobs.0.timeout_s", "> 0"),
    ],
)
def test_bad_command_jobs(script_dir, job, path, match):
    with pytest.raises(SpecError) as err:
        load_experiment(write(script_dir, command_spec(**job)))
    assert err.value.path.startswith(path) and match in err.value.expected, str(err.value)


def test_env_is_only_for_command_jobs(tmp_path):
    spec = {"name": "t", "jobs": [{"name": "a", "workers": 2, "env": {"A": "1"}}]}
    with pytest.raises(SpecError, match=r"jobs\.0\.env .*expected only with command"):
        load_experiment(write(tmp_path, spec))


def test_smallest_first_needs_built_in_models(script_dir):
    spec = {**command_spec(), "controller": {"priority": "smallest-first"}}
    with pytest.raises(SpecError, match="controller.priority = 'smallest-first'"):
        load_experiment(write(script_dir, spec))


def traffic_spec(*entries, **job) -> dict:
    return {
        "name": "t",
        "jobs": [{"name": "a", "workers": 2, "servers": 1, "placement": ["h1", "h2", "h3"], **job}],
        "traffic": list(entries),
    }


def test_traffic_entries_resolve(tmp_path):
    exp = load_experiment(
        write(
            tmp_path,
            traffic_spec(
                {"kind": "iperf3", "src": "h4", "dst": "h9", "proto": "udp", "rate_mbps": 5},
                {"kind": "flows", "load": 0.5, "distribution": "datamining", "priority": 1},
            ),
        )
    )
    assert [t.kind for t in exp.traffic] == ["iperf3", "flows"]
    assert exp.traffic[1].hosts == "free" and exp.traffic[0].parallel == 1
    assert exp.switch_bands() == 4  # a marked entry needs the switches' bands


@pytest.mark.parametrize(
    "entry,path,match",
    [
        ({"kind": "iperf3", "src": "h4", "dst": "h99"}, "traffic.0.dst", "host of the topology"),
        ({"kind": "iperf3", "src": "h1", "dst": "h9"}, "traffic.0.src", "no job is placed on"),
        ({"kind": "iperf3", "src": "h4", "dst": "h4"}, "traffic.0.dst", "other than src"),
        ({"kind": "flows", "load": 0}, "traffic.0.load", "> 0"),
        ({"kind": "flows", "load": 1.5}, "traffic.0.load", "<= 1"),
        ({"kind": "flows", "load": 0.5, "hosts": ["h2", "h5"]}, "traffic.0.hosts.0", "no job"),
        ({"kind": "flows", "load": 0.5, "hosts": ["h5"]}, "traffic.0.hosts", "at least 2"),
        ({"kind": "flows", "load": 0.5, "distribution": "nope.cdf"}, "traffic.0.distribution",
         "cannot read"),
        ({"kind": "flows", "load": 0.5, "priority": 4}, "traffic.0.priority", "below"),
        ({"kind": "ping"}, "traffic.0.kind", "expected one of"),
    ],
)  # fmt: skip
def test_bad_traffic(tmp_path, entry, path, match):
    with pytest.raises(SpecError) as err:
        load_experiment(write(tmp_path, traffic_spec(entry)))
    assert err.value.path == path and match in err.value.expected, str(err.value)


def test_traffic_may_share_job_hosts_when_told(tmp_path):
    entry = {"kind": "iperf3", "src": "h1", "dst": "h9", "share_job_hosts": True}
    assert load_experiment(write(tmp_path, traffic_spec(entry))).traffic[0].src == "h1"


def test_free_hosts_must_leave_two(tmp_path):
    spec = {"name": "t", "jobs": [{"name": "a", "workers": 15}], "traffic": [
        {"kind": "flows", "load": 0.5}]}  # fmt: skip
    with pytest.raises(SpecError, match=r"traffic\.0\.hosts = 'free': expected at least 2"):
        load_experiment(write(tmp_path, spec))


@pytest.mark.parametrize(
    "text,match",
    [
        ("0 0\n100 0.5\n50 1\n", "line 3: not monotone"),
        ("0 0\n100 0.6\n200 0.4\n", "line 3: not monotone"),
        ("0 0\n100 0.5\n", "the last with cdf 1"),
        ("0 0\nabc 1\n", "line 2: expected 'size_bytes cdf'"),
        ("0 0\n100 1.5\n", "0 <= cdf <= 1"),
    ],
)
def test_bad_cdf_files(tmp_path, text, match):
    (tmp_path / "sizes.cdf").write_text(text)
    entry = {"kind": "flows", "load": 0.5, "distribution": "sizes.cdf"}
    with pytest.raises(SpecError) as err:
        load_experiment(write(tmp_path, traffic_spec(entry)))
    assert err.value.path == "traffic.0.distribution" and match in err.value.expected
