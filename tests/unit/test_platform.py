"""What the machine probe reports, on file layouts like a stock kernel's."""

from __future__ import annotations

import platform

import pytest

from testbed.errors import TestbedError
from testbed.platform import Platform, tcp_congestion_controls
from testbed.preflight import check_features
from testbed.spec import validate


def test_module_congestion_controls_are_offered_but_tcp_diag_is_not(tmp_path):
    """Debian 12's kernel ships tcp_diag.ko (socket monitoring) beside the algorithms."""
    moddir = tmp_path / platform.release() / "kernel/net/ipv4"
    moddir.mkdir(parents=True)
    for name in ("tcp_bbr.ko", "tcp_diag.ko", "tcp_vegas.ko.xz"):
        (moddir / name).write_bytes(b"")
    offered = tcp_congestion_controls(tmp_path)
    assert {"bbr", "vegas"} <= set(offered)
    assert "diag" not in offered


def machine(module: bool, tun: bool = True) -> Platform:
    return Platform(True, True, module, True, False, True, ("cubic",), tun=tun)


def test_auto_datapath_is_kernel_exactly_when_the_module_is_loaded():
    assert machine(True).datapath("auto") == "kernel"
    assert machine(False).datapath("auto") == "user"
    assert machine(True).datapath("user") == "user"


SPEC = {"name": "t", "topology": {"kind": "dumbbell"}, "jobs": [{"name": "j", "workers": 1}]}


@pytest.mark.parametrize("datapath", ["auto", "user"])
def test_userspace_datapath_without_tun_device_fails_before_anything_is_built(datapath):
    """Seen in the CI guest: with no /dev/net/tun, OVS cannot create a netdev bridge and
    says so only in its own log; the run used to wait 60 s for the controller."""
    exp = validate({**SPEC, "network": {"datapath": datapath}}, "t.yaml")
    with pytest.raises(TestbedError, match="/dev/net/tun"):
        check_features(exp, "t.yaml", machine(module=False, tun=False))
    check_features(exp, "t.yaml", machine(module=False, tun=True))  # passes


def test_kernel_datapath_needs_no_tun_device():
    exp = validate({**SPEC, "network": {"datapath": "auto"}}, "t.yaml")
    check_features(exp, "t.yaml", machine(module=True, tun=False))
