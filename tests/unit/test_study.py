"""Study specs (sweep, zip, repeats), their tables, the loss bound, and the JSON Schema."""

import glob
import json

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from testbed.cli import main
from testbed.errors import SpecError
from testbed.profile import bound_table, loss_bound, parse_drops, single_job
from testbed.spec.export import spec_json_schema
from testbed.spec.study import expand, is_study
from testbed.study.tables import ci95, summary_table

BASE = {
    "name": "s",
    "topology": {"kind": "dumbbell", "hosts_per_side": 2},
    "jobs": [{"name": "j", "workers": 2, "servers": 1}],
}


def spec(**study):
    return {**BASE, **study}


def test_sweep_is_a_cartesian_product_first_key_slowest_with_seeded_repeats():
    study = expand(
        spec(
            sweep={"jobs.0.transport": ["tcp", "blt"], "topology.link.loss_pct": [0, 2]},
            repeats=2,
            seed=7,
        ),  # fmt: skip
        "s.yaml",
    )
    assert [r.name for r in study.runs][:3] == ["p000-r0", "p000-r1", "p001-r0"]
    points = [
        (r.values["jobs.0.transport"], r.values["topology.link.loss_pct"]) for r in study.runs
    ]
    assert points[::2] == [("tcp", 0), ("tcp", 2), ("blt", 0), ("blt", 2)]
    assert [r.seed for r in study.runs] == [7, 8] * 4
    last = study.runs[-1].experiment
    assert (last.jobs[0].transport.kind, last.topology.link.loss_pct, last.seed) == ("blt", 2, 8)


def test_set_reaches_the_study_keys_too(tmp_path):
    """`--set` overrides any key of a spec file: repeats, one swept key by its own
    dotted path, or a whole axis; a single-run spec becomes a study that way."""
    from testbed.spec.study import Study, load_spec

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec(sweep={"jobs.0.lr": [0.1, 0.2]})))
    study = load_spec(str(path), ["repeats=2", "sweep.jobs.0.lr=[0.3]", "sweep.seed=[4, 5]"])
    assert isinstance(study, Study)
    assert [(r.values["jobs.0.lr"], r.seed) for r in study.runs] == [
        (0.3, 4), (0.3, 5), (0.3, 5), (0.3, 6)]  # fmt: skip
    path.write_text(yaml.safe_dump(BASE))
    assert not isinstance(load_spec(str(path)), Study)
    assert len(load_spec(str(path), ["zip={jobs.0.lr: [0.1, 0.2]}"]).runs) == 2
    with pytest.raises(SpecError, match="sweep = 3: expected a mapping"):
        load_spec(str(path), ["sweep=3"])


def test_zip_varies_its_keys_together_as_one_axis():
    study = expand(
        spec(
            sweep={"jobs.0.workers": [1, 2]},
            zip={"jobs.0.lr": [0.1, 0.05, 0.01], "jobs.0.iterations": [10, 20, 30]},
        ),  # fmt: skip
        "s.yaml",
    )
    assert len(study.runs) == 6
    assert {(r.values["jobs.0.lr"], r.values["jobs.0.iterations"]) for r in study.runs} == {
        (0.1, 10), (0.05, 20), (0.01, 30)}  # fmt: skip
    assert study.swept == ["jobs.0.workers", "jobs.0.lr", "jobs.0.iterations"]


def test_zip_groups_are_one_axis_each_and_the_job_bound_reaches_blt_only():
    """Models with their loss bounds, PS/ring with their worker counts, transports
    swept apart: the product of three axes, and only blt takes the job's bound."""
    study = expand(
        spec(
            sweep={"jobs.0.transport": [{"kind": "tcp"}, {"kind": "blt", "completion": "early"}]},
            zip=[
                {"jobs.0.model": ["mlp", "cnn"], "jobs.0.loss_bound": [0.15, 0.3]},
                {"jobs.0.sync": ["ps", "allreduce"], "jobs.0.servers": [1, 0]},
            ],
        ),  # fmt: skip
        "s.yaml",
    )
    assert len(study.runs) == 8
    assert study.swept == ["jobs.0.transport", "jobs.0.model", "jobs.0.loss_bound",
                           "jobs.0.sync", "jobs.0.servers"]  # fmt: skip
    seen = {
        (r.values["jobs.0.model"], r.values["jobs.0.sync"], r.experiment.jobs[0].servers,
         r.experiment.jobs[0].transport.kind, getattr(r.experiment.jobs[0].transport,
                                                      "loss_bound", None))
        for r in study.runs
    }  # fmt: skip
    assert ("cnn", "allreduce", 0, "blt", 0.3) in seen and ("mlp", "ps", 1, "blt", 0.15) in seen
    assert ("cnn", "ps", 1, "tcp", None) in seen and len(seen) == 8
    with pytest.raises(SpecError, match=r"zip.1.jobs.0.lr = \[0.2\]: already swept"):
        expand(spec(zip=[{"jobs.0.lr": [0.1]}, {"jobs.0.lr": [0.2]}]), "s.yaml")
    with pytest.raises(SpecError, match=r"zip.0 = \[1, 2\]: expected lists of one length"):
        expand(spec(zip=[{"jobs.0.lr": [0.1], "seed": [1, 2]}]), "s.yaml")
    with pytest.raises(SpecError, match="loss_bound 0.15 and transport.loss_bound 0.2 differ"):
        blt = {"kind": "blt", "loss_bound": 0.2}
        expand(spec(zip={"jobs.0.loss_bound": [0.15], "jobs.0.transport": [blt]}), "s.yaml")


def test_sweep_from_the_command_line_and_a_set_shorthand_transport():
    raw = {**BASE, "jobs": [{**BASE["jobs"][0], "transport": "blt"}]}
    study = expand(raw, "s.yaml", ["jobs.0.transport.loss_bound=0.2"], ["jobs.0.lr=[0.1,0.2]"])
    assert [r.experiment.jobs[0].lr for r in study.runs] == [0.1, 0.2]
    # `transport: blt` stays blt when --set reaches inside it.
    assert study.runs[0].experiment.jobs[0].transport.loss_bound == 0.2
    assert is_study(BASE, ["x=[1]"]) and not is_study(BASE)


@pytest.mark.parametrize(
    "study, words",
    [
        ({"sweep": {"jobs.0.lr": [0.1, 200]}}, ["(point 1)", "sweep jobs.0.lr", "200", "<= 100"]),
        ({"sweep": {"jobs.0.lr": 0.1}}, ["sweep.jobs.0.lr", "non-empty list"]),
        ({"zip": {"jobs.0.lr": [0.1], "seed": [1, 2]}}, ["zip", "one length"]),
        ({"sweep": {"seed": [1]}, "zip": {"seed": [2]}}, ["zip.seed", "already swept"]),
        ({"repeats": 0}, ["repeats", "greater than or equal to 1"]),
        ({"sweep": {"jobs.0.colour": ["red"]}}, ["jobs.0.colour", "unknown key"]),
    ],
)
def test_bad_study_keys_are_one_line_errors_naming_key_and_value(study, words):
    with pytest.raises(SpecError) as err:
        expand(spec(**study), "s.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("s.yaml")
    for word in words:
        assert word in message, message


def test_ci95_is_the_t_interval_of_the_mean():
    out = ci95(np.array([1.0, 2.0, 3.0]))
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # std of 1, 2, 3 is 1
    assert (out["n"], out["mean"], out["std"]) == (3, 2.0, 1.0)
    assert out["ci95_low"] == pytest.approx(2 - half) and out["ci95_high"] == pytest.approx(
        2 + half
    )
    assert np.isnan(ci95(np.array([5.0]))["ci95_low"])  # one value: no interval


def test_summary_counts_only_ok_jobs_and_reports_the_rest():
    runs = pd.DataFrame({
        "run": ["p000-r0", "p000-r1", "p000-r2", "p001-r0"], "point": [0, 0, 0, 1],
        "repeat": [0, 1, 2, 0], "seed": [1, 2, 3, 1], "run_status": ["ok", "ok", "failed", "ok"],
        "k": ["a", "a", "a", "b"], "job": ["j"] * 4, "status": ["ok", "ok", "failed", "ok"],
        "workers": [2] * 4, "mean_iter_s": [1.0, 3.0, 100.0, 5.0], "trustworthy": [True] * 4,
    })  # fmt: skip
    summary = summary_table(runs, ["k"]).set_index(["point", "metric"])
    assert set(summary.index.get_level_values("metric")) == {"mean_iter_s"}  # not workers
    row = summary.loc[(0, "mean_iter_s")]
    assert (row["n"], row["mean"], row["n_not_ok"], row["k"]) == (2, 2.0, 1, "a")
    assert {"ci95_low", "ci95_high", "std"} <= set(summary.columns)


def test_summary_leaves_out_untrustworthy_runs_and_runs_that_failed_around_an_ok_job():
    """p000-r1's job is ok but its run failed (a teardown error); p000-r2 is ok but
    untrustworthy (the CPU saturated): neither enters the mean unless asked, and then
    the untrustworthy one is counted and marked."""
    runs = pd.DataFrame({
        "run": ["p000-r0", "p000-r1", "p000-r2", "p000-r3"], "point": [0] * 4,
        "repeat": [0, 1, 2, 3], "seed": [1, 2, 3, 4],
        "run_status": ["ok", "failed", "ok", "ok"], "status": ["ok"] * 4, "job": ["j"] * 4,
        "trustworthy": [True, None, False, True], "mean_iter_s": [1.0, 50.0, 9.0, 3.0],
    })  # fmt: skip
    row = summary_table(runs, []).iloc[0]
    assert (row["n"], row["mean"], row["n_not_ok"], row["n_untrustworthy"]) == (2, 2.0, 1, 1)
    row = summary_table(runs, [], include_untrustworthy=True).iloc[0]
    assert (row["n"], row["mean"], row["n_untrustworthy"]) == (3, 13 / 3, 1)


def profile_runs(accuracy: dict[float, list[float]]) -> pd.DataFrame:
    rows = [{"jobs.0.transport.drop_packets": str(drop), "repeat": i, "status": "ok",
             "run_status": "ok", "trustworthy": True, "final_accuracy": acc}
            for drop, accs in accuracy.items() for i, acc in enumerate(accs)]  # fmt: skip
    return pd.DataFrame(rows)


def test_loss_bound_uses_paired_differences_and_stops_at_the_first_intolerable_drop():
    # Seeds differ a lot (0.80-0.90), but each seed loses ~0.002 at drop 0.1: paired,
    # that is clearly within 0.01. Drop 0.2 loses 0.05; drop 0.3 is back up (noise
    # must not extend the bound past a failure).
    table = bound_table(
        profile_runs(
            {
                0.0: [0.80, 0.85, 0.90],
                0.1: [0.798, 0.849, 0.897],
                0.2: [0.75, 0.80, 0.85],
                0.3: [0.80, 0.85, 0.90],
            }
        ),  # fmt: skip
        tolerance=0.01,
    )
    assert list(table["tolerated"]) == [True, True, False, True]
    assert loss_bound(table) == 0.1
    # Unpaired, the same numbers would have a 95% CI far wider than the tolerance.
    assert table.loc[1, "accuracy_ci95_high"] - table.loc[1, "accuracy_ci95_low"] > 0.2


def test_a_drop_fraction_whose_runs_failed_is_not_tolerated_and_stops_the_bound():
    runs = profile_runs({0.0: [0.80, 0.85, 0.90], 0.1: [0.80, 0.85, 0.90],
                         0.2: [0.0, 0.0, 0.0], 0.3: [0.80, 0.85, 0.90]})  # fmt: skip
    runs.loc[runs["jobs.0.transport.drop_packets"] == "0.2", "status"] = "failed"
    table = bound_table(runs, tolerance=0.01)
    assert list(table["drop_packets"]) == [0.0, 0.1, 0.2, 0.3]
    assert list(table["n"]) == [3, 3, 0, 3]
    assert list(table["tolerated"]) == [True, True, False, True]
    assert loss_bound(table) == 0.1


def test_profile_keeps_one_job_and_makes_every_link_lossless():
    raw = {"name": "p", "topology": {"kind": "dumbbell", "link": {"loss_pct": 1},
                                     "tiers": {"bottleneck": {"loss_pct": 5}}},
           "jobs": [{"name": "a"}, {"name": "b"}]}  # fmt: skip
    index, only = single_job(raw, "p.yaml", "b", ["jobs.1.lr=0.5"])
    assert index == 1 and only["jobs"] == [{"name": "b", "lr": 0.5}]
    assert (
        only["topology"]["link"]["loss_pct"]
        == 0
        == only["topology"]["tiers"]["bottleneck"]["loss_pct"]
    )
    with pytest.raises(SpecError, match="expected a job of the spec: a, b"):
        single_job(raw, "p.yaml", "c", [])
    with pytest.raises(SpecError, match="expected tcp or blt: profile drops packets"):
        single_job({**raw, "jobs": [{"name": "g", "transport": "gloo"}]}, "p.yaml", None, [])
    assert parse_drops("0.1, 0.05") == [0.0, 0.05, 0.1]
    with pytest.raises(SpecError, match=r"\[0, 1\)"):
        parse_drops("0.5,1")


def test_schema_validates_every_config_and_rejects_what_the_loader_rejects(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(spec_json_schema()))
    validator = jsonschema.Draft202012Validator(schema)
    configs = sorted(glob.glob("configs/*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        errors = list(validator.iter_errors(yaml.safe_load(open(path))))
        assert not errors, f"{path}: {errors[0].message}"
    for bad in (
        {**BASE, "jobs": [{"name": "j", "transport": "udp"}]},
        {**BASE, "colour": "red"},
        {**BASE, "sweep": {"jobs.0.lr": 0.1}},
        {**BASE, "repeats": 0},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_the_study_report_names_each_left_out_run_and_can_include_the_untrustworthy(tmp_path):
    """Three repeats: one ok and trusted, one untrustworthy (its CPU saturated), one
    whose job failed. summary.csv counts one; the report says which runs it left out
    and why; --include-untrustworthy counts two and marks the figure."""
    from testbed.report import report
    from testbed.study.tables import write_study_tables

    study = expand(spec(repeats=3), "s.yaml")
    (tmp_path / "study.yaml").write_text(study.as_yaml())
    cases = [("ok", "ok", True, []), ("ok", "ok", False, ["CPU above 90% busy for 9 s"]),
             ("failed", "failed", None, [])]  # fmt: skip
    for run, (run_status, job_status, trustworthy, reasons) in zip(study.runs, cases):
        run_dir = tmp_path / run.name
        run_dir.mkdir()
        fidelity = (
            {"trustworthy": trustworthy, "reasons": reasons} if trustworthy is not None else None
        )
        meta = {"status": run_status, "error": "j: boom" if run_status != "ok" else "",
                "fidelity": fidelity}  # fmt: skip
        (run_dir / "metadata.json").write_text(json.dumps(meta))
        jobs = {"job": "j", "status": job_status, "mean_iter_s": 1.0 + run.repeat,
                "jct_s": 10.0 + run.repeat}  # fmt: skip
        pd.DataFrame([jobs]).to_csv(run_dir / "jobs.csv", index=False)
    runs, summary = write_study_tables(study, tmp_path)
    row = summary.set_index("metric").loc["mean_iter_s"]
    assert (row["n"], row["mean"], row["n_not_ok"], row["n_untrustworthy"]) == (1, 1.0, 1, 1)
    assert list(runs["left_out"].fillna("")) == [
        "", "untrustworthy: CPU above 90% busy for 9 s", "run failed: j: boom"]  # fmt: skip
    text = " ".join(report(tmp_path).read_text().split())  # table padding aside
    assert "over the runs that ended ok and were trustworthy" in text
    assert "| p000-r1 | j | untrustworthy: CPU above 90% busy for 9 s |" in text
    assert "| p000-r2 | j | run failed: j: boom |" in text
    text = " ".join(report(tmp_path, include_untrustworthy=True).read_text().split())
    assert "1.5 [" in text and "(n=2) †" in text  # (1 + 2) / 2, marked
    assert "p000-r1" not in text.split("## Runs left out")[1]


def test_a_benchmark_ratio_needs_every_run_behind_it_ok_and_trusted(tmp_path):
    from testbed.results.verdict import ratio_cell, read_verdict

    def run(name, meta):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps(meta))
        return read_verdict(tmp_path / name)

    good = run("good", {"status": "ok", "fidelity": {"trustworthy": True, "reasons": []}})
    busy = run("busy", {"status": "ok", "fidelity": {"trustworthy": False, "reasons": ["CPU"]}})
    failed = run("failed", {"status": "failed", "error": "j: boom", "fidelity": None})
    assert ratio_cell(3.0, 2.0, good, good) == "1.50x"
    assert ratio_cell(3.0, 2.0, good, busy) == "- (untrustworthy)"
    assert ratio_cell(3.0, 2.0, failed, good) == "- (not ok: failed)"
    assert (busy.why_not(), failed.why_not()) == ("untrustworthy: CPU", "run failed: j: boom")
    assert read_verdict(tmp_path / "never").why_not() == "run missing"


def test_resume_runs_what_is_not_ok_and_on_request_what_is_not_trusted(tmp_path, capsys):
    from testbed.study.runner import _to_run

    for name, meta in {
        "good": {"status": "ok", "fidelity": {"trustworthy": True, "reasons": []}},
        "busy": {"status": "ok", "fidelity": {"trustworthy": False, "reasons": ["CPU"]}},
        "failed": {"status": "failed", "fidelity": None},
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(json.dumps(meta))
    names = ("good", "busy", "failed", "never")
    assert [n for n in names if _to_run(tmp_path / n, False)] == ["failed", "never"]
    assert [n for n in names if _to_run(tmp_path / n, True)] == ["busy", "failed", "never"]
    assert main(["run", "--retry-untrustworthy", "spec.yaml"]) == 2
    assert "expected --resume DIR with it" in capsys.readouterr().err


def test_a_zip_group_is_drawn_once_against_its_first_key(tmp_path):
    """A zip group is one axis: one plot against its first key (none against the keys
    varied with it), as a sweep key gets one; relative plots skip the baseline's axis."""
    from testbed.report import report
    from testbed.study.tables import write_study_tables

    study = expand(
        spec(
            sweep={"jobs.0.transport": ["tcp", "blt"]},
            zip=[
                {"jobs.0.lr": [0.1, 0.05], "jobs.0.iterations": [10, 20]},
                {"jobs.0.workers": [2, 3], "jobs.0.batch_size": [8, 16]},
            ],
            report={"relative_to": {"jobs.0.transport": "tcp"}},
        ),  # fmt: skip
        "s.yaml",
    )
    (tmp_path / "study.yaml").write_text(study.as_yaml())
    for run in study.runs:
        (tmp_path / run.name).mkdir()
        meta = {"status": "ok", "error": "", "fidelity": {"trustworthy": True, "reasons": []}}
        (tmp_path / run.name / "metadata.json").write_text(json.dumps(meta))
        jobs = {"job": "j", "status": "ok", "jct_s": 10.0 + run.point}
        pd.DataFrame([jobs]).to_csv(tmp_path / run.name / "jobs.csv", index=False)
    write_study_tables(study, tmp_path)
    report(tmp_path)
    drawn = {p.stem for p in (tmp_path / "plots").glob("jct_s*.png")}
    assert {"jct_s-vs-jobs-0-transport", "jct_s-vs-jobs-0-lr", "jct_s-vs-jobs-0-workers"} <= drawn
    assert not {"jct_s-vs-jobs-0-iterations", "jct_s-vs-jobs-0-batch_size"} & drawn
    relative = {p.stem for p in (tmp_path / "plots").glob("*baseline*.png")}
    assert relative and not any("transport" in name for name in relative), relative


def test_runs_carry_the_background_flows_of_a_run_with_one_flows_entry(tmp_path):
    """What a job costs its neighbours is a study metric: a run with one `flows` entry
    gives its flows' median and p99 FCT and count to runs.csv and summary.csv; a run
    with two entries gives none (a median of two medians is no median)."""
    from testbed.study.tables import write_study_tables

    study = expand(spec(sweep={"jobs.0.lr": [0.1, 0.2]}), "s.yaml")
    entry = {"entry": 0, "kind": "flows", "completed": 200, "fct_p50_s": 0.2, "fct_p99_s": 19.0}
    for run, entries in zip(study.runs, ([entry], [entry, {**entry, "entry": 1}])):
        (tmp_path / run.name).mkdir()
        meta = {"status": "ok", "error": "", "fidelity": {"trustworthy": True, "reasons": []}}
        (tmp_path / run.name / "metadata.json").write_text(json.dumps(meta))
        pd.DataFrame([{"job": "j", "status": "ok", "jct_s": 10.0}]).to_csv(
            tmp_path / run.name / "jobs.csv", index=False
        )
        pd.DataFrame(entries).to_csv(tmp_path / run.name / "traffic.csv", index=False)
    runs, summary = write_study_tables(study, tmp_path)
    first, second = runs.iloc[0], runs.iloc[1]
    assert (first["flows_fct_p50_s"], first["flows_fct_p99_s"], first["flows_completed"]) == (
        0.2, 19.0, 200)  # fmt: skip
    assert np.isnan(second["flows_fct_p50_s"])
    row = summary[(summary["metric"] == "flows_fct_p50_s") & (summary["point"] == 0)].iloc[0]
    assert (row["n"], row["mean"]) == (1, 0.2)
