"""The `cluster:` section and the server checks that need no second server: every bad
value is one SpecError line naming the key; ssh commands carry their words quoted;
an unreachable server is reported, not raised."""

from __future__ import annotations

import shlex

import pytest
import yaml

from testbed import shell
from testbed.errors import SpecError
from testbed.network import cluster
from testbed.spec import load_experiment, validate

JOB = {"name": "j", "workers": 3}


def spec(topology=None, **section) -> dict:
    raw = {"name": "t", "jobs": [JOB], "cluster": section}
    if topology:
        raw["topology"] = topology
    return raw


@pytest.mark.parametrize(
    "section,topology,key,expected",
    [
        ({"servers": ["a"]}, None, "cluster.servers", "expected at least 2 items"),
        ({"servers": ["a", "-oProxyCommand=x"]}, None, "cluster.servers.1",
         "expected text matching"),
        ({"servers": ["a", "b c"]}, None, "cluster.servers.1", "expected text matching"),
        ({"servers": ["a", "a"]}, None, "cluster.servers.1", "expected servers named once each"),
        ({"servers": ["a", "b"], "placement": "random"}, None, "cluster.placement",
         "expected 'pod', 'switchbin' or 'roundrobin'"),
        ({"servers": ["a", "b"], "tunnel": "vxlan"}, None, "cluster.tunnel",
         "expected 'gre' or 'ssh'"),
        ({"servers": ["a", "b", "c", "d", "e"]}, None, "cluster.servers",
         "expected at most 4 servers for placement pod"),
        ({"servers": ["a", "b"]}, {"kind": "leaf-spine", "leaves": 2, "spines": 2},
         "cluster.placement", "expected switchbin or roundrobin for a leaf-spine"),
        ({"servers": ["a", "b"], "user": "me"}, None, "cluster.user", "unknown key"),
    ],
)  # fmt: skip
def test_bad_cluster_sections_name_the_key(section, topology, key, expected):
    with pytest.raises(SpecError) as err:
        validate(spec(topology, **section), "t.yaml")
    message = str(err.value)
    assert message.startswith(f"t.yaml: {key}") and expected in message, message
    assert "\n" not in message


def test_a_cluster_section_defaults_and_round_trips(tmp_path):
    exp = validate(spec(servers=["mlnet-a", "10.9.0.2"]), "t.yaml")
    assert (exp.cluster.placement, exp.cluster.tunnel) == ("pod", "gre")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    assert load_experiment(path) == exp
    assert validate({"name": "t", "jobs": [JOB]}, "t.yaml").cluster is None


def test_the_remote_command_is_one_quoted_line():
    argv = shell.ssh_argv("b", ["sh", "-c", "echo $HOME; true"])
    assert argv[:-2] == ["ssh", *shell.SSH_OPTIONS, "b"] and argv[-2] == "--"
    assert shlex.split(argv[-1]) == ["sh", "-c", "echo $HOME; true"]


def test_an_unresolvable_server_is_a_problem_not_an_exception():
    (check,) = cluster.check_servers(["no-such-host.invalid"])
    assert not check.ssh and check.address is None
    assert check.problems[0] == "cannot resolve no-such-host.invalid to an IPv4 address"
    assert "the first server must be this machine" in check.problems[-1]


def test_a_server_without_sshd_fails_its_ssh_check():
    """127.0.0.1 is this machine, but nothing listens for ssh on port 22 here (CI
    machines run no sshd; skipped where one does)."""
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 22)) == 0:
            pytest.skip("an sshd listens on this machine")
    (check,) = cluster.check_servers(["127.0.0.1"])
    assert check.local and not check.ssh
    assert (
        check.problems
        == [p for p in check.problems if p.startswith("ssh -o BatchMode=yes 127.0.0.1 failed")]
        and len(check.problems) == 1
    )


def test_the_controller_listens_on_the_route_to_the_second_server():
    assert cluster.controller_address(["127.0.0.1", "127.0.0.2"]) == "127.0.0.1"


@pytest.mark.parametrize(
    "extra,key,expected",
    [
        ({"faults": [{"at_s": 1, "controller": "kill"}]}, "faults", "expected no faults"),
        ({"traffic": [{"kind": "flows", "load": 0.1, "duration_s": 5}]}, "traffic",
         "expected no background traffic"),
        ({"jobs": [{"name": "c", "command": "true", "workers": 2}]}, "jobs.0.command",
         "expected a built-in training job on a cluster"),
        ({"network": {"loss_backend": "nftables"}}, "network.loss_backend",
         "expected auto or netem"),
    ],
)  # fmt: skip
def test_what_a_cluster_run_cannot_do_is_refused_by_key(extra, key, expected):
    """Found with the spec, before anything is built; one line naming the key."""
    with pytest.raises(SpecError) as err:
        validate({**spec(servers=["a", "b"]), **extra}, "t.yaml")
    line = str(err.value)
    assert line.startswith(f"t.yaml: {key} = ") and expected in line, line
    assert "\n" not in line


def test_the_guest_pair_shares_one_fresh_key_and_the_names():
    from testbed.vm import pair

    first, second = pair._shared_files(), pair._shared_files()
    assert first["cluster/hosts"] == b"10.231.0.1 mlnet-a\n10.231.0.2 mlnet-b\n"
    assert first["cluster/id_ed25519"].startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert first["cluster/id_ed25519.pub"].startswith(b"ssh-ed25519 ")
    assert first["cluster/id_ed25519"] != second["cluster/id_ed25519"]  # made per boot


def test_net_dev_counters_are_read_by_name():
    """links.csv on a cluster reads every server's /proc/net/dev (tunnel ends included)."""
    from testbed.network.cluster_net import parse_net_dev

    text = (
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "a0_0-eth3: 1500 10 0 0 0 0 0 0 9000 60 0 0 0 0 0 0\n"
        "    lo: 7 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n"
    )
    stats = parse_net_dev(text)
    assert stats["a0_0-eth3"] == {"rx_bytes": 1500, "rx_packets": 10, "tx_bytes": 9000,
                                  "tx_packets": 60}  # fmt: skip
    assert set(stats) == {"a0_0-eth3", "lo"}
