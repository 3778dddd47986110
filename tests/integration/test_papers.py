"""A paper study in miniature, end to end: MLNET's Figure 1 config at one point (two
arms, one repeat, a small job), through `testbed report` and its "Against the paper"
section, whose verdicts must follow the reference file's rules and nothing else."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

PAPER = Path("configs/papers/mlnet")
CLAIM = "1a: RACK finishes in 42% of the baseline's time at W/S = 16"
SHRINK = [
    "--set", "sweep.topology.tiers.fabric.bw_mbps=[20]",
    "--set", "sweep.jobs.0.servers=[2]",
    "--set", "sweep.jobs.0.aggregation=[none, rack]",
    "--set", "repeats=1",
    "--set", "jobs.0.workers=8",
    "--set", "jobs.0.iterations=4",
    "--set", "jobs.0.eval_every=4",
]  # fmt: skip


def verdicts(report: Path) -> dict[str, str]:
    """claim -> verdict, read off report.md's verdict table."""
    section = report.read_text().split("### Verdicts")[1]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ")]
    return {r[1].strip(): r[-2].strip() for r in rows[1:]}


def test_a_miniature_of_figure_1_through_the_report(tmp_path, no_leftovers):
    for name in ("fig1.yaml", "fig1.ref.yaml"):
        shutil.copy(PAPER / name, tmp_path / name)
    out = tmp_path / "study"
    run = run_cli(["run", str(tmp_path / "fig1.yaml"), *SHRINK, "--out", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    assert (out / "reference.yaml").read_text() == (PAPER / "fig1.ref.yaml").read_text()
    jobs = pd.read_csv(out / "runs.csv").set_index("jobs.0.aggregation")
    assert (jobs["trustworthy"] == True).all(), jobs["left_out"]  # noqa: E712

    report = run_cli(["report", str(out)])
    assert report.returncode == 0, report.stderr[-2000:]
    text = (out / "report.md").read_text()
    assert "## Against the paper" in text and "plots/paper-points.png" in text
    assert (out / "plots" / "paper-points.png").stat().st_size > 10_000
    # Ours for the claim: rack's JCT over none's, this one repeat; its verdict is the
    # reference's rule applied to it. Claims at points not run have no usable runs.
    ratio = jobs.loc["rack", "jct_s"] / jobs.loc["none", "jct_s"]
    found = verdicts(out / "report.md")
    assert found[CLAIM] == ("reproduced" if 0.28 <= ratio <= 0.63 else
                            "opposite" if ratio >= 1 else "not reproduced")  # fmt: skip
    assert re.search(rf"{re.escape(CLAIM)} \| 0\.42 \| {ratio:.3g} \(n=1\)", " ".join(text.split()))
    assert found["1b: RACK cuts makespan by 73% at W/S = 16"] == "not reproduced"

    # A rule that cannot hold gives `not reproduced`, whatever the runs say.
    ref = yaml.safe_load((out / "reference.yaml").read_text())
    claim = next(c for c in ref["claims"] if c["claim"] == CLAIM)
    claim["reproduced"], claim["opposite"] = [-2.0, -1.0], None
    (out / "reference.yaml").write_text(yaml.safe_dump(ref))
    assert run_cli(["report", str(out)]).returncode == 0
    assert verdicts(out / "report.md")[CLAIM] == "not reproduced"


APNET = Path("configs/papers/apnet")
TAIL = "4c: MLP, PS: tail message FCT 8.0 -> 2.6 ms (0.325)"
BLT_EARLY = "{kind: blt, loss_bound: 0.15, completion: early}"
APNET_SHRINK = [
    "--set", f"sweep.jobs.0.transport=[{{kind: tcp}}, {BLT_EARLY}]",
    "--set", "zip.jobs.0.sync=[ps]",
    "--set", "zip.jobs.0.workers=[7]",
    "--set", "zip.jobs.0.servers=[1]",
    "--set", "repeats=1",
    "--set", "jobs.0.iterations=6",
    "--set", "jobs.0.eval_every=3",
    "--set", "jobs.0.compute_ms=50",
]  # fmt: skip


def test_a_miniature_of_apnet_figure_4_through_the_report(tmp_path, no_leftovers):
    """APNet's Figure 4 config at one point: TCP against blt with early completion
    (arms that are mappings), under its background load; the tail-FCT claim (a metric
    of its own) is decided by its rule on the runs' fct_p99_s ratio."""
    for name in ("fig4.yaml", "fig4.ref.yaml"):
        shutil.copy(APNET / name, tmp_path / name)
    out = tmp_path / "study"
    run = run_cli(["run", str(tmp_path / "fig4.yaml"), *APNET_SHRINK, "--out", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["trustworthy"] == True).all(), runs["left_out"]  # noqa: E712
    by = runs.set_index(
        runs["jobs.0.transport"].str.contains("early").map({True: "blt", False: "tcp"})
    )
    assert by.loc["blt", "status"] == "ok" and by.loc["tcp", "status"] == "ok"
    # What each arm cost the background flows beside it comes from the run's traffic.csv.
    for arm in ("tcp", "blt"):
        flows = pd.read_csv(out / by.loc[arm, "run"] / "traffic.csv").iloc[0]
        assert by.loc[arm, "flows_completed"] == flows["completed"]
        assert by.loc[arm, "flows_fct_p50_s"] == pytest.approx(flows["fct_p50_s"], nan_ok=True)

    report = run_cli(["report", str(out)])
    assert report.returncode == 0, report.stderr[-2000:]
    ratio = by.loc["blt", "fct_p99_s"] / by.loc["tcp", "fct_p99_s"]
    assert verdicts(out / "report.md")[TAIL] == (
        "reproduced" if 0.217 <= ratio <= 0.49 else "opposite" if ratio >= 1 else "not reproduced"
    )
    text = " ".join((out / "report.md").read_text().split())
    assert re.search(rf"{re.escape(TAIL)} \| 0\.325 \| {ratio:.3g} \(n=1\)", text)


REDUCED = "{kind: tcp, drop_packets: 0.15, drop_at: sender}"
NO_GAIN = "3a: TCP sending a message reduced by the bound gains nothing (~1.0)"
FIG3_SHRINK = [
    "--set", f"zip.jobs.0.transport=[{{kind: tcp}}, {REDUCED}]",
    "--set", "zip.jobs.0.sync=[ps, ps]",
    "--set", "zip.jobs.0.workers=[7, 7]",
    "--set", "zip.jobs.0.servers=[1, 1]",
    "--set", "repeats=1",
    "--set", "jobs.0.iterations=6",
    "--set", "jobs.0.eval_every=3",
    "--set", "jobs.0.compute_ms=50",
]  # fmt: skip


def test_a_miniature_of_apnet_figure_3_sends_a_reduced_message(tmp_path, no_leftovers):
    """Fig. 3a's arm, TCP carrying a message the application reduced (`drop_at:
    sender`), through a real fabric: its messages are shorter on the wire by about the
    fraction left out, and the claim's verdict is the rule applied to the JCT ratio, the
    baseline picked by part of a zipped axis (transport and sync)."""
    for name in ("fig3.yaml", "fig3.ref.yaml"):
        shutil.copy(APNET / name, tmp_path / name)
    out = tmp_path / "study"
    run = run_cli(["run", str(tmp_path / "fig3.yaml"), *FIG3_SHRINK, "--out", str(out)])
    assert run.returncode == 0, run.stderr[-2000:]
    runs = pd.read_csv(out / "runs.csv")
    assert (runs["trustworthy"] == True).all(), runs["left_out"]  # noqa: E712
    arm = runs["jobs.0.transport"].str.contains("sender").map({True: "reduced", False: "tcp"})
    by = runs.set_index(arm)
    assert (by["status"] == "ok").all()
    sent = {a: pd.read_csv(out / by.loc[a, "run"] / "messages.csv") for a in ("tcp", "reduced")}
    # 6 iterations x 7 workers x push and pull x 14 packets = 1,176 packets, each left out
    # with p = 0.15: the share sent is 0.85 with sd 0.010; [0.75, 0.95] is 9 sd wide.
    share = sent["reduced"]["bytes"].sum() / sent["tcp"]["bytes"].sum()
    assert 0.75 <= share <= 0.95, share
    assert sent["tcp"]["delivered_fraction"].min() == 1
    assert sent["reduced"]["delivered_fraction"].mean() == pytest.approx(share, abs=0.02)

    report = run_cli(["report", str(out)])
    assert report.returncode == 0, report.stderr[-2000:]
    ratio = by.loc["reduced", "jct_s"] / by.loc["tcp", "jct_s"]
    assert verdicts(out / "report.md")[NO_GAIN] == (
        "reproduced" if 0.9 <= ratio <= 1.1 else "opposite" if ratio <= 0.75 else "not reproduced"
    )
