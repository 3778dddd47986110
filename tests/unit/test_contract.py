"""The harness <-> controller contract: documents round-trip, and a missing or unknown
key is an error that names it (before any controller process starts)."""

import pytest

from controllers.contract import ContractError, JobsDoc, ReadyReport, TopologyDoc
from controllers.topology import Fabric
from testbed.spec.schema import FatTreeSpec, LeafSpineSpec
from topologies import build_topology


@pytest.mark.parametrize("spec", [FatTreeSpec(k=4), LeafSpineSpec(kind="leaf-spine")])
def test_topology_document_round_trips(spec):
    doc = build_topology(spec).document()
    assert TopologyDoc.from_json(doc.to_json()) == doc
    assert len(doc.hosts) == len(build_topology(spec).host_info)


def test_fat_tree_document_carries_k_and_fabric_reads_it():
    fabric = Fabric.from_json(build_topology(FatTreeSpec(k=4)).to_json())
    assert fabric.k == 4 and len(fabric.switches) == 20 and len(fabric.hosts) == 16


def test_jobs_document_round_trips():
    doc = JobsDoc.from_json(
        {
            "policy": "las",
            "classes": 4,
            "dscp": [56, 48, 40, 32],
            "thresholds_bytes": [10, 20],
            "jobs": [{"name": "a", "hosts": ["h1", "h2"], "priority": 1}],
        }  # fmt: skip
    )
    assert JobsDoc.from_json(doc.to_json()) == doc
    assert doc.jobs[0].hosts == ("h1", "h2") and doc.jobs[0].total_bytes == 0


def test_missing_key_is_named():
    data = build_topology(FatTreeSpec(k=4)).to_json()
    del data["switches"][3]["dpid"]
    with pytest.raises(
        ContractError, match=r"TopologyDoc: key 'switches\.3\.dpid': field required"
    ):
        TopologyDoc.from_json(data)


def test_unknown_key_is_named():
    with pytest.raises(ContractError, match=r"ReadyReport: key 'errrors'"):
        ReadyReport.from_json({"switches": 20, "errors": 0, "errrors": 1})


def test_wrong_type_is_named():
    with pytest.raises(ContractError, match=r"JobsDoc: key 'classes'"):
        JobsDoc.from_json({"policy": "none", "classes": "four", "dscp": [], "jobs": []})


def test_documents_are_frozen():
    report = ReadyReport(switches=1, errors=0)
    with pytest.raises(Exception, match="frozen"):
        report.errors = 3
