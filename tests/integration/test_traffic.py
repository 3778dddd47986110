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
    # How many complete is not asserted: while the job runs, the bottleneck is offered
    # more than its 15 Mb/s and the flows back up. Those that did complete were whole.
    done = flows[flows["completed"]]
    assert len(done) > 0 and (done["fct_s"] > 0).all()
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


TICKER = """\
import json, time
for i in range(100000):
    print(json.dumps({"iteration": i}), flush=True)
    time.sleep(0.1)
"""


def test_ctrl_c_stops_traffic_and_command_jobs_keeping_their_records(tmp_path):
    """SIGINT while untimed flows, an iperf3 pair and a command job run: the run is
    `interrupted`, flows.csv and traffic.csv keep what happened (flows in flight are
    rows with completed false), and nothing is left behind."""
    import json
    import signal
    import time

    from tests.integration.conftest import start_cli
    from tests.integration.leaks import new_leftovers, snapshot

    (tmp_path / "tick.py").write_text(TICKER)
    data = spec("websearch")
    data["jobs"] = [{"name": "tick", "command": "{python} tick.py", "workers": 2}]
    data["traffic"] = [
        {"kind": "flows", "load": 0.5, "hosts": ["h3", "h4", "h7", "h8"]},
        {"kind": "iperf3", "src": "h2", "dst": "h6", "rate_mbps": 2},
    ]
    path = write_spec(tmp_path / "ctrlc.yaml", data)
    before = snapshot()
    out = tmp_path / "run"
    proc = start_cli(["run", str(path), "--out", str(out)])
    records = out / "raw" / "traffic"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        found = [p for p in records.glob("flows-0-*.jsonl") if p.read_text().count("\n") >= 2]
        if found:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no flow completed in time")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert json.loads((out / "metadata.json").read_text())["status"] == "interrupted"
    assert pd.read_csv(out / "jobs.csv").loc[0, "status"] == "interrupted"
    flows = pd.read_csv(out / "flows.csv")
    assert len(flows) >= 1 and set(flows["src"]) <= {"h3", "h4", "h7", "h8"}
    traffic = pd.read_csv(out / "traffic.csv").set_index("entry")
    assert traffic.loc[1, "received_bytes"] > 0  # the server's report, the client was stopped
    assert new_leftovers(before, snapshot()) == {}
