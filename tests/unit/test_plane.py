"""Forwarding planes: which veths each makes, where each direction is queued and
marked, and which plane `auto` picks (testbed.network.plane, testbed.platform)."""

from __future__ import annotations

import pytest

from testbed.errors import SpecError
from testbed.network.plane import Plane, wire_end
from testbed.platform import AFXDP_PORT_BYTES, Platform
from testbed.preflight import check_features
from testbed.spec import validate
from testbed.spec.schema import DumbbellSpec, FatTreeSpec
from topologies import build_topology


def dumbbell():
    return build_topology(DumbbellSpec(kind="dumbbell", hosts_per_side=1))


def test_the_packet_plane_makes_one_veth_per_link_with_host_ends_second():
    pairs = Plane("packet").veth_pairs(dumbbell())
    assert sorted(pairs) == [("left-eth1", "h1-eth0"), ("left-eth2", "right-eth2"),
                             ("right-eth1", "h2-eth0")]  # fmt: skip
    assert Plane("packet").wires(dumbbell()) == []


def test_the_afxdp_plane_gives_every_link_end_a_wire_end_and_joins_them_both_ways():
    topo, plane = dumbbell(), Plane("afxdp")
    pairs = plane.veth_pairs(topo)
    ends = [e for d in topo.directions() for e in (d.interface,) if d.src == d.link.a]
    ends += [d.interface for d in topo.directions() if d.src == d.link.b]
    assert sorted(pairs) == sorted((wire_end(e), e) for e in ends)
    assert ("left-w2", "right-w2") in plane.wires(topo)
    assert ("right-w2", "left-w2") in plane.wires(topo)
    assert len(plane.wires(topo)) == 2 * len(topo.link_info)
    # in the root namespace: switch ports and every wire end, never a host's interface
    assert sorted(plane.root_interfaces(topo)) == sorted(
        [e for e in ends if not e.startswith("h")] + [wire_end(e) for e in ends]
    )


def test_a_switch_output_is_queued_and_marked_on_the_wire_ends_a_host_output_at_home():
    topo, plane = dumbbell(), Plane("afxdp")
    out = {d.name: d for d in topo.directions()}
    hosts = topo.host_info
    # left -> right leaves left-eth2, reaches left-w2, is queued on right-w2
    assert plane.tree_interface(out["left->right"], hosts) == "right-w2"
    assert plane.mark_hook(out["left->right"], hosts) == ("ingress", "left-w2")
    assert plane.tree_interface(out["h1->left"], hosts) == "h1-eth0"
    assert plane.mark_hook(out["h1->left"], hosts) == ("egress", "h1-eth0")
    for d in topo.directions():  # the packet plane: the sender's own egress
        assert Plane("packet").tree_interface(d, hosts) == d.interface
        assert Plane("packet").mark_hook(d, hosts) == ("egress", d.interface)


def test_wire_end_names_fit_the_kernel_limit_at_k16():
    topo = build_topology(FatTreeSpec(k=16))
    names = Plane("afxdp").root_interfaces(topo)
    assert (
        len(names) == len(set(names)) == 2 * len(topo.interface_names()) + len(topo.host_info)
    )  # switch ports, their wire ends, and the hosts' wire ends
    assert max(map(len, names)) <= 15


def machine(types=("system", "afxdp", "afxdp-nonpmd"), available=24 * 2**30) -> Platform:
    return Platform(True, True, False, False, False, True, ("cubic",),
                    ovs_port_types=types, mem_available_bytes=available)  # fmt: skip


def test_auto_ports_take_afxdp_where_offered_and_its_pinned_memory_fits():
    assert machine().ports("auto", "user", 80)[0] == "afxdp"
    assert machine(types=("system",)).ports("auto", "user", 80)[0] == "packet"
    # k=8: 640 ports would pin 47 GiB, far beyond half of 24 GiB
    plane, why = machine().ports("auto", "user", 640)
    assert plane == "packet" and "640 AF_XDP ports would pin 46.9 GiB" in why
    edge = int(machine().mem_available_bytes * 0.5 // AFXDP_PORT_BYTES)
    assert machine().ports("auto", "user", edge)[0] == "afxdp"
    assert machine().ports("auto", "user", edge + 1)[0] == "packet"
    assert machine().ports("packet", "user", 80) == ("packet", "requested by the spec")
    assert machine().ports("afxdp", "kernel", 80)[0] == "kernel"


def test_afxdp_ports_where_open_vswitch_has_none_are_refused_before_building():
    exp = validate({"name": "x", "topology": {"kind": "dumbbell"}, "network": {"ports": "afxdp"},
                    "jobs": [{"name": "j", "workers": 1}]}, "spec.yaml")  # fmt: skip
    with pytest.raises(SpecError) as err:
        check_features(exp, "spec.yaml", machine(types=("system",)))
    assert str(err.value) == (
        "spec.yaml: network.ports = 'afxdp': expected auto or packet: this Open vSwitch "
        "offers no afxdp ports"
    )
    check_features(exp, "spec.yaml", machine())  # offered: accepted
