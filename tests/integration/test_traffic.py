"""Background traffic on a real network: Poisson flows at a chosen load, and what they
do to a parameter-server job that shares the bottleneck with them."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.integration.conftest import run_cli, write_spec

pytestmark = pytest.mark.integration

# Flow sizes uniform on 10-200 kB (mean 105 kB): bounded, so that the offered load of
# one 20 s window is tight (see the tolerance below). The shipped web-search CDF has
# E[S^2]/E[S]^2 = 6.4 and would need ~20x the flows for the same precision.
TEST_CDF = "# size_bytes cdf\n10000 0\n200000 1\n"
WINDOW_S = 20.0
LOAD = 0.5


def spec(cdf: str) -> dict:
    """A dumbbell (4 + 4 hosts at 10 Mb/s, a 15 Mb/s bottleneck); a PS job with its
    server on the left (h1) and its workers on the right (h5, h6); flows among the 5
    other hosts, about 7.5 Mb/s of them across the bottleneck in each direction."""
    return {
        "name": "traffic",
        "seed": 1,
        "topology": {
            "kind": "dumbbell",
            "hosts_per_side": 4,
            "link": {"bw_mbps": 10},
            "tiers": {"bottleneck": {"bw_mbps": 15}},
        },
        "jobs": [
            {
                "name": "ps",
                "model": {"name": "mlp", "hidden": [256]},
                "workers": 2,
                "servers": 1,
                "placement": ["h1", "h5", "h6"],
                "iterations": 60,
            }
        ],
        "traffic": [{"kind": "flows", "load": LOAD, "distribution": cdf, "duration_s": WINDOW_S}],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same spec run with its traffic and without it (traffic: [])."""
    base = tmp_path_factory.mktemp("traffic")
    (base / "sizes.cdf").write_text(TEST_CDF)
    path = write_spec(base / "traffic.yaml", spec("sizes.cdf"))
    out = {}
    for arm, extra in (("with", []), ("without", ["--set", "traffic=[]"])):
        out[arm] = base / arm
        result = run_cli(["run", str(path), "--out", str(out[arm]), *extra])
        assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_flows_offer_the_load_asked_for(runs, no_leftovers):
    """Offered load measured from flows.csv: the bytes of the flows started in the
    window over what the 5 hosts' 10 Mb/s links carry in it, within 15% of 0.5.

    Tolerance: the window holds ~600 flows (5 hosts x 5.95 flows/s x 20 s); for a
    compound Poisson sum, CV = sqrt(E[S^2] / E[S]^2 / N) = sqrt(1.27 / 600) = 4.6%,
    so 15% is 3.3 sigma (two-sided false failure ~0.1%). Arrivals follow an absolute
    schedule, so a slow CPU delays flows but does not drop them."""
    flows = pd.read_csv(runs["with"] / "flows.csv")
    traffic = pd.read_csv(runs["with"] / "traffic.csv").iloc[0]
    measured = flows["size_bytes"].sum() * 8 / (WINDOW_S * 5 * 10e6)
    assert measured == pytest.approx(LOAD, rel=0.15)
    assert traffic["offered_load"] == pytest.approx(measured, rel=1e-6)
    assert flows["src"].nunique() == 5 and set(flows["src"]) == set(flows["dst"])
    assert not {"h1", "h5", "h6"} & set(flows["src"])  # hosts: free avoids the job
    # The run stops at the window's end, with the last flows in flight; those that
    # started 5 s before it (p99 FCT here is ~2 s) have had time to finish.
    early = flows[flows["start_s"] < flows["start_s"].min() + WINDOW_S - 5]
    assert early["completed"].mean() >= 0.95
    done = flows[flows["completed"]]
    assert (done["fct_s"] > 0).all()
    assert (done["sent_bytes"] == done["size_bytes"]).all()


def test_background_flows_slow_the_ps_job(runs):
    """The job's pushes and pulls cross the bottleneck (up to 10 Mb/s each way) with
    ~7.5 Mb/s of flows per direction, so its mean iteration time rises. The margin:
    without traffic the job is limited by the server's 10 Mb/s link, with it by its
    share of 15 Mb/s under contention; asserted only as 'higher' (the issue's claim),
    while the measured rise is far above the ~5% that mean_iter_s varies between
    identical runs here."""
    mean = {arm: pd.read_csv(d / "jobs.csv").iloc[0]["mean_iter_s"] for arm, d in runs.items()}
    assert mean["with"] > mean["without"], mean
    assert not (runs["without"] / "flows.csv").exists()
