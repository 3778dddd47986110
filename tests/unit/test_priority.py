"""Priority policies against the fake flow table: which DSCP each job's packets
carry out of their ingress edge switch, and LAS demotions at the right byte counts."""

from __future__ import annotations

import json

import pytest

from controllers.accounting import Accounting
from controllers.ofmsg import discard_lost
from controllers.priority import COOKIE_MASK, COOKIE_TAG, make_priority
from controllers.routing import make_routing
from controllers.topology import Fabric
from testbed.network.tc import CLASS_DSCP
from testbed.spec.schema import DumbbellSpec, FatTreeSpec
from tests.fakeflow import FakeFabric
from topologies import build_topology

JOBS = [
    {"name": "big", "hosts": ["h1", "h2", "h16"], "priority": 2, "total_bytes": 9_000_000},
    {"name": "small", "hosts": ["h3", "h5"], "priority": 0, "total_bytes": 40_000},
    {"name": "mid", "hosts": ["h7", "h9", "h11"], "priority": None, "total_bytes": 800_000},
]


def setup(
    policy,
    jobs=JOBS,
    classes=4,
    thresholds=(1_000, 10_000, 100_000),
    spec=None,
    resume=None,
    order=("spec", 1),
):
    data = build_topology(spec or FatTreeSpec(k=4)).to_json()
    fabric = Fabric.from_json(data)
    config = {
        "policy": policy,
        "classes": classes,
        "dscp": list(CLASS_DSCP),
        "jobs": jobs,
        "thresholds_bytes": list(thresholds),
        "order": order[0],
        "seed": order[1],
    }
    prio = make_priority(fabric, config, resume)
    fake = FakeFabric(data)
    fake.program([prio, Accounting(fabric, config), make_routing(fabric, "two-level")])
    for switch in fake.switches.values():
        switch.apply(discard_lost())
    return prio, fake


def dscp_at_destination(fake, src, dst):
    """(where the packet ended, DSCP it carried on the last hop)."""
    pkt = {"eth_type": 0x0800, "ipv4_src": fake.hosts[src]["ip"], "ipv4_dst": fake.hosts[dst]["ip"]}
    switch, port = fake.wire[(src, 0)]
    dscp = None
    for _ in range(8):
        outs = fake.switches[switch].forward({**pkt, "in_port": port})
        assert len(outs) == 1
        out_port, pkt = outs[0]
        dscp = pkt.get("ip_dscp", 0)
        node, port = fake.wire[(switch, out_port)]
        if node in fake.hosts:
            return node, dscp
        switch = node
    raise AssertionError("loop")


def test_none_marks_nothing():
    _, fake = setup("none")
    assert dscp_at_destination(fake, "h1", "h16") == ("h16", 0)


def test_fixed_marks_each_jobs_flows_with_its_class():
    prio, fake = setup("fixed")
    assert dscp_at_destination(fake, "h1", "h16") == ("h16", CLASS_DSCP[2])
    assert dscp_at_destination(fake, "h16", "h2") == ("h2", CLASS_DSCP[2])
    assert dscp_at_destination(fake, "h3", "h5") == ("h5", CLASS_DSCP[0])
    assert dscp_at_destination(fake, "h7", "h11") == ("h11", CLASS_DSCP[3])  # unset: lowest
    # traffic between hosts of different jobs is nobody's: unmarked, still delivered
    assert dscp_at_destination(fake, "h1", "h3") == ("h3", 0)
    assert {e[0]: e[1] for e in prio.take_events()} == {"big": 2, "small": 0, "mid": 3}


def test_marks_are_installed_only_at_ingress_edge_switches():
    _, fake = setup("fixed")
    marking = {
        name
        for name, sw in fake.switches.items()
        for e in sw.tables.get(0, [])
        if e.cookie & COOKIE_MASK == COOKIE_TAG
    }
    # h1 h2 | h3 | h5 | h7 | h9 | h11 | h16, and no aggregation or core switch
    assert marking == {"e0_0", "e0_1", "e1_0", "e1_1", "e2_0", "e2_1", "e3_1"}


def test_smallest_first_ranks_by_the_bytes_a_job_will_send_in_all():
    prio, fake = setup("smallest-first")
    classes = {job: cls for job, cls, _ in prio.take_events()}
    assert classes == {"small": 0, "mid": 1, "big": 2}
    assert dscp_at_destination(fake, "h3", "h5")[1] == CLASS_DSCP[0]


def test_smallest_first_buckets_when_jobs_outnumber_classes():
    jobs = [
        {
            "name": f"j{i}",
            "hosts": [f"h{2 * i + 1}", f"h{2 * i + 2}"],
            "total_bytes": 1000 * (8 - i),
        }
        for i in range(8)
    ]
    prio, _ = setup("smallest-first", jobs=jobs, classes=2, thresholds=(1,))
    classes = {job: cls for job, cls, _ in prio.take_events()}
    assert [classes[f"j{i}"] for i in range(8)] == [1, 1, 1, 1, 0, 0, 0, 0]


def test_smallest_first_gives_jobs_of_one_size_one_class_whatever_their_order():
    jobs = [
        {"name": "b", "hosts": ["h1", "h2"], "total_bytes": 5_000},
        {"name": "a", "hosts": ["h3", "h4"], "total_bytes": 1_000},
        {"name": "c", "hosts": ["h5", "h6"], "total_bytes": 5_000},
    ]
    prio, _ = setup("smallest-first", jobs=jobs)
    assert {job: cls for job, cls, _ in prio.take_events()} == {"a": 0, "b": 1, "c": 1}


def test_total_bytes_counts_iterations_and_each_sync_schemes_messages():
    """A job twice as long sends twice as much: a short big-model job can rank above
    a long small-model one, which bytes per iteration alone would invert."""
    from testbed.spec.schema import JobSpec
    from testbed.training.size import copies_per_iteration, model_bytes, total_bytes

    ps = JobSpec(name="p", workers=4, servers=1, iterations=10)
    ring = JobSpec(name="r", workers=4, servers=0, sync="allreduce", iterations=10)
    assert copies_per_iteration(ps) == 8 and copies_per_iteration(ring) == 6
    assert total_bytes(ps) == model_bytes(ps) * 8 * 10
    longer = ps.model_copy(update={"iterations": 20})
    assert total_bytes(longer) == 2 * total_bytes(ps)


def counters(fake, switch):
    return [(e.cookie, e.bytes) for e in fake.switches[switch].tables.get(0, [])]


def send(fake, src, dst, packets, size=100):
    for _ in range(packets):
        fake.deliveries(src, dst)  # the fake switches count bytes per entry (100 B each)


def test_las_demotes_at_each_threshold_and_keeps_counting():
    prio, fake = setup("las")
    prio.take_events()
    assert dscp_at_destination(fake, "h1", "h16")[1] == CLASS_DSCP[0]
    send(fake, "h1", "h16", 8)  # 800 B + the probe above: below 1,000 B
    assert prio.on_flow_stats("e0_0", counters(fake, "e0_0")) == []
    send(fake, "h2", "h16", 3)  # job 'big' now past 1,000 B, counted over two hosts
    msgs = prio.on_flow_stats("e0_0", counters(fake, "e0_0"))
    assert msgs and {sw for sw, _ in msgs} == {"e0_0", "e3_1"}
    for switch, msg in msgs:
        fake.switches[switch].apply(msg)
    assert dscp_at_destination(fake, "h1", "h16")[1] == CLASS_DSCP[1]
    assert dscp_at_destination(fake, "h16", "h1")[1] == CLASS_DSCP[1]
    assert [e[:2] for e in prio.take_events()] == [("big", 1)]
    assert dscp_at_destination(fake, "h3", "h5")[1] == CLASS_DSCP[0]  # other jobs untouched
    # MODIFY_STRICT kept the counters, so the next threshold is crossed cumulatively
    send(fake, "h1", "h16", 100)
    for switch, msg in prio.on_flow_stats("e0_0", counters(fake, "e0_0")):
        fake.switches[switch].apply(msg)
    assert dscp_at_destination(fake, "h1", "h16")[1] == CLASS_DSCP[2]


def test_a_restarted_las_resumes_each_jobs_class_and_counts_on():
    """The killed controller's state (its classes and attained bytes) goes to the new
    one: 'big' stays in class 1 though the new switches count from zero, and is
    demoted again once its bytes in all, old and new, cross the next threshold."""
    prio, fake = setup("las")
    send(fake, "h1", "h16", 11)  # 1,100 B: past the first threshold
    for switch, msg in prio.on_flow_stats("e0_0", counters(fake, "e0_0")):
        fake.switches[switch].apply(msg)
    state = json.loads(json.dumps(prio.state()))  # as the app writes and reads it
    assert state["classes"]["big"] == 1 and state["attained"]["big"] >= 1_100
    again, fresh = setup("las", resume=state)  # a new controller: cleared switches
    events = {job: (cls, reason) for job, cls, reason in again.take_events()}
    assert events["big"][0] == 1 and "resumed after a controller restart" in events["big"][1]
    assert events["small"][0] == 0
    assert dscp_at_destination(fresh, "h1", "h16")[1] == CLASS_DSCP[1]
    send(fresh, "h1", "h16", 90)  # 9,000 B new + the 1,100 B before: past 10,000 B
    for switch, msg in again.on_flow_stats("e0_0", counters(fresh, "e0_0")):
        fresh.switches[switch].apply(msg)
    assert again.current["big"] == 2


def test_las_never_goes_below_the_lowest_class():
    prio, fake = setup("las", thresholds=(10, 20, 30))
    send(fake, "h3", "h5", 50)
    prio.on_flow_stats("e0_1", counters(fake, "e0_1"))
    assert prio.current["small"] == 3


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown priority policy"):
        setup("random")


def test_dumbbell_marks_at_both_switches():
    jobs = [{"name": "a", "hosts": ["h1", "h4"], "priority": 1}]
    _, fake = setup("fixed", jobs=jobs, spec=DumbbellSpec(kind="dumbbell", hosts_per_side=2))
    assert dscp_at_destination(fake, "h1", "h4") == ("h4", CLASS_DSCP[1])
    assert dscp_at_destination(fake, "h4", "h1") == ("h1", CLASS_DSCP[1])


def test_a_random_fixed_order_is_a_seeded_permutation_spread_over_the_classes():
    jobs = [{"name": f"j{i}", "hosts": [f"h{2 * i + 1}", f"h{2 * i + 2}"]} for i in range(6)]

    def classes(seed):
        prio, _ = setup("fixed", jobs=jobs, classes=3, thresholds=(1, 2), order=("random", seed))
        return {job: cls for job, cls, _ in prio.take_events()}

    first = classes(1)
    assert sorted(first.values()) == [0, 0, 1, 1, 2, 2]  # 6 ranks cut into 3 classes
    assert classes(1) == first and classes(2) != first  # the seed decides
