"""Job placement: servers first, spread crosses racks and pods, pack is consecutive."""

from __future__ import annotations

from testbed.spec import validate
from testbed.spec.placement import place, spread_order
from topologies import build_topology


def experiment(*jobs, k=4):
    return validate(
        {"name": "p", "topology": {"kind": "fat-tree", "k": k}, "jobs": list(jobs)}, "test"
    )


def test_spread_alternates_pods_then_racks():
    exp = experiment({"name": "a", "workers": 4, "servers": 1})
    topo = build_topology(exp.topology)
    order = spread_order(topo)
    pods = [topo.host_info[h].pod for h in order[:4]]
    assert pods == [0, 1, 2, 3]
    assert len(set(order)) == 16
    placed = place(exp, topo)["a"]
    assert placed.servers == ("h1",) and len(placed.workers) == 4
    assert len({topo.host_info[h].rack for h in placed.hosts}) == 5


def test_pack_is_consecutive():
    exp = experiment({"name": "a", "workers": 3, "servers": 1, "placement": "pack"})
    placed = place(exp, build_topology(exp.topology))["a"]
    assert placed.hosts == ("h1", "h2", "h3", "h4")


def test_jobs_get_disjoint_hosts_and_explicit_lists_win():
    exp = experiment(
        {"name": "a", "workers": 3, "servers": 1, "placement": "pack"},
        {"name": "b", "workers": 1, "servers": 1, "placement": ["h2", "h16"]},
    )
    placed = place(exp, build_topology(exp.topology))
    assert placed["b"].servers == ("h2",) and placed["b"].workers == ("h16",)
    assert placed["a"].hosts == ("h1", "h3", "h4", "h5")


def test_rack_local_fits_a_job_into_one_rack_when_it_can():
    exp = validate(
        {
            "name": "p",
            "topology": {"kind": "leaf-spine", "spines": 2, "leaves": 3, "hosts_per_leaf": 4},
            "jobs": [
                {"name": "a", "workers": 2, "servers": 1, "placement": "pack"},
                {"name": "b", "workers": 3, "servers": 1, "placement": "rack-local"},
                {"name": "c", "workers": 4, "servers": 1, "placement": "rack-local"},
            ],
        },
        "test",
    )
    topo = build_topology(exp.topology)
    placed = place(exp, topo)
    racks = {job: {topo.host_info[h].rack for h in p.hosts} for job, p in placed.items()}
    assert racks["a"] == {0}  # h1-h3, leaving one host free in rack 0
    assert racks["b"] == {1}  # needs 4: rack 1 fits exactly (rack 0 has only 1 free)
    assert len(placed["c"].hosts) == 5 and racks["c"] == {2, 0}  # 4 in rack 2 + 1 left in 0
