"""A paper's reference file and our values beside it: loading (one-line errors), the
per-repeat ratios, and the verdict rules, on hand-made study tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from testbed.errors import SpecError
from testbed.spec.reference import Claim, load_reference
from testbed.study.against import claims_table, points_table, verdict

SWEPT = ["jobs.0.servers", "jobs.0.aggregation"]


def reference(tmp_path, **changes) -> dict:
    ref = {
        "paper": "MLNET", "figure": "Fig. 1a", "page": 3, "source": "the paper", "metric": "jct_s",
        "normalise": {"jobs.0.aggregation": "none"}, "meaning": "makespan over the baseline's",
        "x_label": "W/S", "y_label": "makespan / baseline",
        "points": [{"series": "rack", "x": 16, "paper": 0.42,
                    "at": {"jobs.0.servers": 2, "jobs.0.aggregation": "rack"}}],
        "claims": [
            {"claim": "rack cuts makespan to 42%", "paper": 0.42, "reproduced": [0.28, 0.63],
             "opposite": [1, 1e9], "at": {"jobs.0.servers": 2, "jobs.0.aggregation": "rack"}},
            {"claim": "the baseline falls 8x from 2 to 16 servers", "paper": 8.0,
             "reproduced": [5.3, 12], "opposite": [0, 1], "normalised": False,
             "at": {"jobs.0.servers": 2, "jobs.0.aggregation": "none"},
             "over": {"jobs.0.servers": 16}},
        ],
    } | changes  # fmt: skip
    path = tmp_path / "fig.ref.yaml"
    path.write_text(yaml.safe_dump(ref))
    return path


def runs(jct: dict) -> pd.DataFrame:
    """runs.csv rows: (servers, aggregation) -> JCT per repeat; every run ok, trusted."""
    rows = []
    for (servers, agg), values in jct.items():
        for repeat, value in enumerate(values):
            rows.append({"run": f"{servers}-{agg}-{repeat}", "repeat": repeat, "job": "j",
                         "jobs.0.servers": servers, "jobs.0.aggregation": agg, "jct_s": value,
                         "run_status": "ok", "status": "ok", "trustworthy": True})  # fmt: skip
    return pd.DataFrame(rows)


def test_ours_is_a_per_repeat_ratio_with_its_interval(tmp_path):
    ref = load_reference(reference(tmp_path), SWEPT, "s.yaml")
    table = runs({(2, "none"): [10.0, 20.0], (2, "rack"): [4.0, 10.0], (16, "none"): [1.0, 2.0]})
    points = points_table(ref, table, tmp_path)
    assert points.loc[0, "ours"] == pytest.approx(0.45)  # (4/10 + 10/20) / 2, not 14/30
    assert points.loc[0, "n"] == 2 and points.loc[0, "ci95_low"] < 0.45 < points.loc[0, "ci95_high"]
    claims = claims_table(ref, table, tmp_path).set_index("claim")
    assert claims.loc["rack cuts makespan to 42%", "verdict"] == "reproduced"
    falls = claims.loc["the baseline falls 8x from 2 to 16 servers"]
    assert falls["ours"] == pytest.approx(10.0) and falls["verdict"] == "reproduced"


def test_a_claim_is_decided_by_its_rule_alone(tmp_path):
    claim = Claim(claim="c", paper=0.42, reproduced=(0.28, 0.63), opposite=(1, 1e9), at={})
    assert [verdict(claim, v) for v in (0.3, 0.9, 1.4, float("nan"))] == [
        "reproduced", "not reproduced", "opposite", "not reproduced"]  # fmt: skip


def test_untrustworthy_runs_and_unpaired_repeats_do_not_count(tmp_path):
    ref = load_reference(reference(tmp_path), SWEPT, "s.yaml")
    table = runs({(2, "none"): [10.0, 20.0, 30.0], (2, "rack"): [4.0, 10.0, 99.0]})
    table.loc[table["run"] == "2-rack-2", "trustworthy"] = False
    table = table[table["run"] != "2-none-1"]  # repeat 1's baseline is missing
    point = points_table(ref, table, tmp_path).iloc[0]
    assert (point["n"], point["ours"]) == (1, 0.4)
    rack_only = runs({(2, "rack"): [4.0]})
    assert np.isnan(points_table(ref, rack_only, tmp_path).loc[0, "ours"])


@pytest.mark.parametrize(
    "change, where",
    [({"normalise": {"jobs.0.lr": 0.1}}, "normalise"),
     ({"claims": [{"claim": "c", "paper": 1.0, "reproduced": [1, 0],
                   "at": {"jobs.0.servers": 2, "jobs.0.aggregation": "rack"}}]}, "reproduced"),
     ({"claims": [{"claim": "c", "paper": 1.0, "reproduced": [0, 1],
                   "at": {"jobs.0.servers": 2}}]}, "claims.0.at"),
     ({"metric": "links.packets"}, "metric"),
     # a CDF is normalised by one arm: normalise must fix every swept key
     ({"metric": "jobs.jct_s", "cdf": True}, "normalise")],
)  # fmt: skip
def test_a_bad_reference_is_one_line_naming_the_file_and_key(tmp_path, change, where):
    path = reference(tmp_path, **change)
    with pytest.raises(SpecError) as err:
        load_reference(path, SWEPT, "s.yaml")
    assert str(path) in str(err.value) and where in str(err.value) and "\n" not in str(err.value)


def test_relative_to_gives_each_metric_as_a_paired_ratio_to_the_baseline_arm():
    from testbed.report.study import relative_summary

    table = runs({(2, "none"): [10.0, 20.0], (2, "rack"): [4.0, 10.0]}).assign(point=0)
    table.loc[table["jobs.0.aggregation"] == "rack", "point"] = 1
    rel = relative_summary(table, SWEPT, {"jobs.0.aggregation": "none"}).set_index("point")
    assert rel.loc[1, "mean"] == pytest.approx(0.45) and rel.loc[0, "mean"] == 1.0


def test_link_bytes_are_what_each_direction_carried_while_sampled():
    from testbed.results.tables import link_bytes_table

    links = pd.DataFrame({
        "time_s": [1, 1, 2, 2], "direction": ["a->b", "b->a"] * 2, "link": ["a--b"] * 4,
        "tier": ["core"] * 4, "src": ["a", "b"] * 2, "dst": ["b", "a"] * 2,
        "tx_bytes": [100, 0, 350, 40], "tx_packets": [1, 0, 4, 1],
    })  # fmt: skip
    out = link_bytes_table(links).set_index("direction")
    assert out.loc["a->b", "bytes"] == 250 and out.loc["b->a", "packets"] == 1
    assert list(link_bytes_table(None).columns)[:2] == ["link", "tier"]


def test_a_study_report_section_is_checked_before_anything_runs(tmp_path):
    from testbed.spec.study import expand

    base = {"name": "s", "topology": {"kind": "dumbbell", "hosts_per_side": 2},
            "jobs": [{"name": "j", "workers": 2}],
            "sweep": {"jobs.0.aggregation": ["none", "rack"]}}  # fmt: skip
    with pytest.raises(SpecError, match="report.relative_to = 'jobs.0.lr': expected a swept key"):
        expand({**base, "report": {"relative_to": {"jobs.0.lr": 0.1}}}, str(tmp_path / "s.yaml"))
    with pytest.raises(SpecError, match="expected one of its swept values"):
        expand({**base, "report": {"relative_to": {"jobs.0.aggregation": "binary"}}}, "s.yaml")
    with pytest.raises(SpecError, match="report.reference"):
        expand({**base, "report": {"reference": "missing.ref.yaml"}}, str(tmp_path / "s.yaml"))
    zipped = {**base, "zip": {"jobs.0.lr": [0.1, 0.05], "jobs.0.iterations": [10, 20]}}
    for part in ({"jobs.0.lr": 0.1}, {"jobs.0.lr": 0.1, "jobs.0.iterations": 20}):
        with pytest.raises(SpecError, match="the whole zipped axis at one position"):
            expand({**zipped, "report": {"relative_to": part}}, "s.yaml")
    whole = {"jobs.0.lr": 0.05, "jobs.0.iterations": 20}
    assert expand({**zipped, "report": {"relative_to": whole}}, "s.yaml").keys.report.relative_to
    ref = reference(
        tmp_path,
        normalise={"jobs.0.aggregation": "none"},
        points=[],
        claims=[
            {"claim": "c", "paper": 0.5, "reproduced": [0, 1], "at": {"jobs.0.aggregation": "rack"}}
        ],
    )
    study = expand({**base, "report": {"reference": ref.name}}, str(tmp_path / "s.yaml"))
    assert study.reference == ref


def test_a_transport_swept_whole_and_a_claim_with_its_own_metric(tmp_path):
    """Arms named by a mapping (a transport swept whole, matched by its runs.csv
    label), and a claim on another jobs.csv column than the reference's."""
    from testbed.spec.study import label

    tcp, blt = {"kind": "tcp"}, {"kind": "blt", "loss_bound": 0.15, "completion": "early"}
    swept = ["jobs.0.transport"]
    path = reference(
        tmp_path, normalise={"jobs.0.transport": tcp}, points=[],
        claims=[{"claim": "JCT 0.54", "paper": 0.54, "reproduced": [0.36, 0.81],
                 "at": {"jobs.0.transport": blt}},
                {"claim": "tail FCT 0.33", "paper": 0.33, "reproduced": [0.22, 0.49],
                 "metric": "fct_p99_s", "at": {"jobs.0.transport": blt}}],
    )  # fmt: skip
    ref = load_reference(path, swept, "s.yaml")
    rows = [{"run": f"{t}-{r}", "repeat": r, "job": "j", "jobs.0.transport": label(arm),
             "jct_s": jct, "fct_p99_s": p99, "run_status": "ok", "status": "ok",
             "trustworthy": True}
            for r in (0, 1)
            for t, arm, jct, p99 in (("tcp", tcp, 10.0, 0.3), ("blt", blt, 5.0, 0.1))]  # fmt: skip
    claims = claims_table(ref, pd.DataFrame(rows), tmp_path).set_index("claim")
    assert claims.loc["JCT 0.54", "ours"] == pytest.approx(0.5)
    assert claims.loc["tail FCT 0.33", "ours"] == pytest.approx(1 / 3)
    with pytest.raises(SpecError, match="metric"):
        bad = reference(tmp_path, claims=[{"claim": "c", "paper": 1, "reproduced": [0, 1],
                                           "metric": "links.nonsense", "at": {}}])  # fmt: skip
        load_reference(bad, SWEPT, "s.yaml")


def test_a_zip_group_is_pinned_by_the_keys_that_pick_one_position(tmp_path):
    """jobs.0.name alone picks a model of the zip group; a value two positions share
    (the loss bound 0.15) would pool two arms, and is an error before anything runs. A
    value of no position picks no run, as a swept value the study does not run."""
    swept = ["jobs.0.aggregation", "jobs.0.name", "jobs.0.loss_bound"]
    zips = [{"jobs.0.name": ["mlp", "cnn", "rnn"], "jobs.0.loss_bound": [0.15, 0.15, 0.1]}]
    at = {"jobs.0.aggregation": "rack", "jobs.0.name": "cnn"}
    claim = {"claim": "c", "paper": 1.0, "reproduced": [0, 1], "at": at}
    for fine in (at, {**at, "jobs.0.name": "lstm"}):
        path = reference(tmp_path, points=[], claims=[{**claim, "at": fine}])
        assert load_reference(path, swept, "s.yaml", zips)
    bad = {"jobs.0.aggregation": "rack", "jobs.0.loss_bound": 0.15}
    path = reference(tmp_path, points=[], claims=[{**claim, "at": bad}])
    with pytest.raises(SpecError, match="pick one position of the zip group"):
        load_reference(path, swept, "s.yaml", zips)


def test_per_divides_each_run_by_a_column_of_the_same_run(tmp_path):
    """Table 1's ratio: eq. 1 with the tail FCT per eq. 1 with the average, per run,
    averaged over repeats (not a ratio of averages)."""
    claim = {"claim": "tail/mean", "paper": 1.77, "reproduced": [1.5, 2.1], "normalised": False,
             "metric": "jct_eq1_tail_s", "per": "jct_eq1_mean_s",
             "at": {"jobs.0.servers": 2, "jobs.0.aggregation": "none"}}  # fmt: skip
    ref = load_reference(reference(tmp_path, points=[], claims=[claim]), SWEPT, "s.yaml")
    table = runs({(2, "none"): [0.0, 0.0]})
    table["jct_eq1_tail_s"], table["jct_eq1_mean_s"] = [3.0, 10.0], [2.0, 5.0]
    row = claims_table(ref, table, tmp_path).iloc[0]
    assert row["ours"] == pytest.approx(1.75) and row["verdict"] == "reproduced"  # (1.5 + 2) / 2
    with pytest.raises(SpecError, match="per"):
        load_reference(reference(tmp_path, claims=[{**claim, "per": "links.bytes"}]), SWEPT, "s")
