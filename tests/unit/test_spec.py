"""Spec validation: good specs resolve; every bad one is a one-line SpecError that
names the file, the key path, the bad value and what was expected."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from testbed.errors import SpecError
from testbed.spec import load_experiment, validate
from testbed.spec.schema import Experiment

BASE = {
    "name": "t",
    "topology": {"kind": "fat-tree", "k": 4},
    "jobs": [{"name": "a", "workers": 4, "servers": 1}],
}


def write(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def edit(path_value: dict) -> dict:
    """BASE with dotted keys replaced (None deletes)."""
    spec = copy.deepcopy(BASE)
    for dotted, value in path_value.items():
        node = spec
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def test_quickstart_config_is_valid():
    exp = load_experiment("configs/quickstart.yaml")
    assert exp.topology.kind == "fat-tree" and exp.topology.k == 4
    assert exp.jobs[0].workers == 4 and exp.jobs[0].servers == 1


def test_defaults_fill_in(tmp_path):
    exp = load_experiment(write(tmp_path, BASE))
    assert exp.seed == 1
    assert exp.network.datapath == "auto"
    assert exp.controller.routing == "two-level"
    assert exp.jobs[0].transport.kind == "tcp"
    assert exp.jobs[0].transport.congestion_control == "cubic"
    assert exp.topology.link.bw_mbps == 100


def test_shorthands_expand(tmp_path):
    spec = edit({"jobs.0.model": "cnn", "jobs.0.transport": "tcp"})
    exp = load_experiment(write(tmp_path, spec))
    assert exp.jobs[0].model.name == "cnn" and exp.jobs[0].model.channels == (16, 32)


def test_defaults_follow_model_and_sync(tmp_path):
    spec = edit(
        {
            "jobs": [
                {"name": "a", "model": "lstm", "sync": "allreduce", "workers": 2},
                {"name": "b", "model": {"name": "mf", "rank": 4}},
            ]
        }
    )
    a, b = load_experiment(write(tmp_path, spec)).jobs
    assert a.dataset == "sequences" and a.servers == 0
    assert b.dataset == "ratings" and b.servers == 1
    gloo = edit({"jobs.0.transport": "gloo", "jobs.0.sync": "allreduce", "jobs.0.servers": None})
    assert load_experiment(write(tmp_path, gloo)).jobs[0].transport.kind == "gloo"


def test_spec_is_frozen(tmp_path):
    exp = load_experiment(write(tmp_path, BASE))
    with pytest.raises(ValidationError, match="frozen"):
        exp.seed = 2  # type: ignore[misc]


def test_tier_override_applies_only_to_its_tier(tmp_path):
    spec = edit({"topology.tiers": {"core": {"bw_mbps": 10}}})
    topo = load_experiment(write(tmp_path, spec)).topology
    assert topo.params_for("core").bw_mbps == 10
    assert topo.params_for("edge").bw_mbps == 100


def test_set_overrides_keys(tmp_path):
    exp = load_experiment(
        write(tmp_path, BASE), ["jobs.0.workers=8", "topology.k=6", "controller.routing=ecmp"]
    )
    assert exp.jobs[0].workers == 8 and exp.topology.k == 6
    assert exp.controller.routing == "ecmp"


def test_set_can_replace_a_mapping_with_a_shorthand(tmp_path):
    spec = edit({"jobs.0.transport": {"kind": "tcp", "congestion_control": "reno"}})
    exp = load_experiment(write(tmp_path, spec), ["jobs.0.transport=tcp"])
    assert exp.jobs[0].transport.congestion_control == "cubic"


def test_resolved_spec_round_trips(tmp_path):
    exp = load_experiment("configs/quickstart.yaml")
    again = load_experiment(write(tmp_path, exp.model_dump(mode="json")))
    assert again == exp


# (spec edits, key path, value shown, words of the expectation)
BAD = [
    ({"topology.k": 5}, "topology.k", "5", "even"),
    ({"topology.k": 0}, "topology.k", "0", ">= 2"),
    ({"topology.k": "4"}, "topology.k", "'4'", "integer"),
    ({"topology.kind": "torus"}, "topology.kind", "'torus'", "'fat-tree', 'leaf-spine'"),
    ({"topology.bogus": 1}, "topology.bogus", "1", "unknown key"),
    ({"topology.link": {"bw_mbps": 0}}, "topology.link.bw_mbps", "0", "> 0"),
    ({"topology.link": {"loss_pct": 100}}, "topology.link.loss_pct", "100", "< 100"),
    ({"topology.link": {"queue_pkts": 1.5}}, "topology.link.queue_pkts", "1.5", "integer"),
    ({"topology.tiers": {"spine": {"bw_mbps": 1}}}, "topology.tiers.spine", "'spine'", "host"),
    ({"name": "Bad Name"}, "name", "'Bad Name'", "matching"),
    ({"name": None}, "name", None, "missing required key"),
    ({"seed": -1}, "seed", "-1", ">= 0"),
    ({"launcher": "spawn"}, "launcher", "'spawn'", "'fork' or 'exec'"),
    ({"network.datapath": "dpdk"}, "network.datapath", "'dpdk'", "'auto', 'user' or 'kernel'"),
    ({"network.shaper_burst_ms": 0}, "network.shaper_burst_ms", "0", "> 0"),
    ({"network.shaper_burst_ms": 500.0}, "network.shaper_burst_ms", "500.0", "<= 100"),
    ({"controller.routing": "ospf"}, "controller.routing", "'ospf'", "two-level"),
    ({"jobs": []}, "jobs", "[]", "at least 1"),
    ({"jobs.0.workers": 0}, "jobs.0.workers", "0", ">= 1"),
    ({"jobs.0.workers": 20}, "jobs.0.workers", "20", "16 hosts"),
    ({"jobs.0.servers": 0}, "jobs.0.servers", "0", "sync: ps"),
    ({"jobs.0.model": "resnet"}, "jobs.0.model", "'resnet'", "'mlp', 'cnn', 'mf', 'lstm'"),
    ({"jobs.0.model": {"name": "mlp", "hidden": [0]}}, "jobs.0.model.hidden.0", "0", ">= 1"),
    ({"jobs.0.model": {"name": "mlp", "depth": 3}}, "jobs.0.model.depth", "3", "hidden"),
    ({"jobs.0.transport": "quic"}, "jobs.0.transport", "'quic'", "'tcp', 'blt', 'gloo'"),
    ({"jobs.0.transport": "gloo"}, "jobs.0.sync", "'ps'", "allreduce for transport gloo"),
    (
        {"jobs.0.transport": {"kind": "blt", "loss_bound": 1.0}},
        "jobs.0.transport.loss_bound",
        "1.0",
        "< 1",
    ),
    (
        {"jobs.0.transport": {"kind": "blt", "fill": "mean"}},
        "jobs.0.transport.fill",
        "'mean'",
        "'zero' or 'stale'",
    ),
    (
        {"jobs.0.transport": {"kind": "tcp", "drop_fraction": -0.1}},
        "jobs.0.transport.drop_fraction",
        "-0.1",
        ">= 0",
    ),
    ({"jobs.0.sync": "allreduce"}, "jobs.0.servers", "1", "expected 0 for sync: allreduce"),
    (
        {"jobs.0.model": "mf", "jobs.0.dataset": "digits"},
        "jobs.0.dataset",
        "'digits'",
        "ratings for model mf",
    ),
    ({"jobs.0.dataset": "imagenet"}, "jobs.0.dataset", "'imagenet'", "'digits'"),
    (
        {"jobs.0.placement": ["h1", "h99", "h3", "h4", "h5"]},
        "jobs.0.placement.1",
        "'h99'",
        "h1..h16",
    ),
    ({"jobs.0.placement": ["h1", "h2"]}, "jobs.0.placement", "['h1', 'h2']", "5 hosts"),
    ({"jobs.0.placement": ["h1", "h1", "h3", "h4", "h5"]}, "jobs.0.placement.1", "'h1'", "once"),
    ({"jobs.0.placement": "scatter"}, "jobs.0.placement", "'scatter'", "spread"),
    ({"jobs.0.lr": 0}, "jobs.0.lr", "0", "> 0"),
    ({"jobs.0.momentum": 1.0}, "jobs.0.momentum", "1.0", "< 1"),
    ({"jobs.0.iterations": True}, "jobs.0.iterations", "True", "integer"),
    ({"jobs.0.extra": 1}, "jobs.0.extra", "1", "batch_size"),
    (
        {"topology.directed": [{"src": "h1", "dst": "h2", "loss_pct": 1}]},
        "topology.directed.0",
        "'h1->h2'",
        "joined by a link",
    ),
    (
        {"topology.directed": [{"src": "h1", "loss_pct": 1}]},
        "topology.directed.0.dst",
        None,
        "missing required key",
    ),
    (
        {"network.loss_backend": "tc"},
        "network.loss_backend",
        "'tc'",
        "'auto', 'netem' or 'nftables'",
    ),
    (
        {"jobs.0.transport": {"kind": "tcp", "congestion_control": "Cubic!"}},
        "jobs.0.transport.congestion_control",
        "'Cubic!'",
        "matching",
    ),
    ({"jobs.0.aggregation": "pod"}, "jobs.0.aggregation", "'pod'", "'none', 'rack' or 'binary'"),
    ({"jobs.0.aggregation": {"fanin": 1}}, "jobs.0.aggregation.fanin", "1", ">= 2"),
    ({"jobs.0.aggregation": {"fanin": "2"}}, "jobs.0.aggregation.fanin", "'2'", "integer"),
    (
        {"jobs.0.aggregation": "rack", "jobs.0.sync": "allreduce", "jobs.0.servers": 0},
        "jobs.0.aggregation",
        "'rack'",
        "none for sync: allreduce",
    ),
]


@pytest.mark.parametrize(
    "edits,path,value,expected", BAD, ids=[b[1] + "=" + str(b[2]) for b in BAD]
)
def test_bad_spec_is_one_line_naming_file_key_value_expectation(
    tmp_path, edits, path, value, expected
):
    spec_file = write(tmp_path, edit(edits), "bad.yaml")
    with pytest.raises(SpecError) as info:
        load_experiment(spec_file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{spec_file}: {path}")
    if value is not None:
        assert f"= {value}:" in message
    assert expected in message


@pytest.mark.parametrize(
    "edits,path",
    [
        (
            {"controller.priority": "fixed", "topology.tiers.core.queue_pkts": 3},
            "topology.tiers.core.queue_pkts",
        ),
        (
            {"network.priority_bands": "always", "topology.link.queue_pkts": 2},
            "topology.link.queue_pkts",
        ),
    ],
)
def test_switch_ports_need_a_packet_per_band(tmp_path, edits, path):
    with pytest.raises(SpecError, match=rf"{path} = [23]: expected >= 4 packets"):
        load_experiment(write(tmp_path, edit(edits)))


def test_unbanded_ports_may_hold_fewer_packets_than_classes(tmp_path):
    exp = load_experiment(write(tmp_path, edit({"topology.link.queue_pkts": 2})))
    assert exp.switch_bands() == 1


def test_duplicate_job_names(tmp_path):
    spec = edit({"jobs": [{"name": "a", "workers": 2}, {"name": "a", "workers": 2}]})
    with pytest.raises(SpecError, match=r"jobs\.1\.name = 'a': expected a name unique"):
        load_experiment(write(tmp_path, spec))


def test_jobs_together_exceed_hosts(tmp_path):
    spec = edit({"jobs": [{"name": "a", "workers": 9}, {"name": "b", "workers": 5}]})
    with pytest.raises(SpecError, match=r"jobs = '17 host roles': expected at most 16"):
        load_experiment(write(tmp_path, spec), ["jobs.1.workers=6"])


def test_explicit_hosts_shared_between_jobs(tmp_path):
    spec = edit(
        {
            "jobs": [
                {"name": "a", "workers": 1, "placement": ["h1", "h2"]},
                {"name": "b", "workers": 1, "placement": ["h2", "h3"]},
            ]
        }
    )
    with pytest.raises(SpecError, match=r"jobs\.1\.placement\.0 = 'h2': .*used by jobs\.0"):
        load_experiment(write(tmp_path, spec))


def test_missing_file():
    with pytest.raises(SpecError, match=r"^nope\.yaml: cannot read file"):
        load_experiment("nope.yaml")


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "name: t\njobs: [\n  - {name: a\n")
    with pytest.raises(SpecError, match=r"line \d+.*YAML syntax error"):
        load_experiment(path)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(SpecError, match="YAML mapping"):
        load_experiment(write(tmp_path, "- 1\n- 2\n"))


@pytest.mark.parametrize(
    "override,match",
    [
        ("jobs.0.workers", "expected KEY.PATH=VALUE"),
        ("jobs.3.workers=1", r"jobs\.3 = '3': expected an index < 1"),
        ("jobs.0.workers=abc", r"\(--set jobs\.0\.workers\): jobs\.0\.workers = 'abc'"),
    ],
)
def test_bad_overrides(tmp_path, override, match):
    with pytest.raises(SpecError, match=match):
        load_experiment(write(tmp_path, BASE), [override])


def test_schema_lists_every_documented_top_level_key():
    assert set(Experiment.model_fields) == {
        "name",
        "seed",
        "topology",
        "network",
        "controller",
        "results",
        "launcher",
        "jobs",
        "traffic",
        "faults",
        "cluster",
    }


@pytest.mark.parametrize("path", sorted(__import__("glob").glob("configs/*.yaml")))
def test_every_shipped_config_is_valid(path):
    from testbed.spec.study import load_study

    assert load_study(path).runs  # a plain spec is a study of one run


def test_the_readme_reference_spec_is_a_valid_file_that_shows_the_defaults():
    """configs/reference.yaml validates, docs/spec.md shows it verbatim, and every key
    it sets outside its examples (tiers, directed, faults) has its default value."""
    from pathlib import Path

    text = Path("configs/reference.yaml").read_text()
    assert f"```yaml\n{text}```" in Path("docs/spec.md").read_text()
    ref = load_experiment("configs/reference.yaml").model_dump(mode="json")
    minimal = validate({"name": "reference", "jobs": [{"name": "mlp"}]}, "t").model_dump(
        mode="json"
    )
    ref["controller"]["las_thresholds_mb"] = None  # written out as the default it stands for
    for key in ("seed", "network", "controller", "results", "launcher", "jobs"):
        assert ref[key] == minimal[key], key
    assert ref["topology"]["link"] == minimal["topology"]["link"]
    from testbed.spec.schema import ControllerSpec

    assert ControllerSpec().thresholds_bytes() == [m * 10**6 for m in (2, 20, 200)]
