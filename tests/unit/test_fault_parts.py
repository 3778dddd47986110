"""The pure parts of faults: which pairs a link exposes, how a probe trace reads as
a recovery, and a PS server that goes on without a dead or silent worker (the mean
over the workers that delivered)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from controllers.topology import Fabric
from testbed.faults import paths, probe
from testbed.spec.schema import FatTreeSpec
from testbed.training.ps import PSServer
from testbed.transports.base import Channel, Listener, MessageStats, Transport
from topologies import build_topology

P = probe.PERIOD_MS / 1000


def fabric(k=4) -> Fabric:
    return Fabric.from_json(build_topology(FatTreeSpec(k=k)).to_json())


def test_a_core_link_exposes_exactly_the_pairs_in_and_out_of_its_pod():
    f = fabric()
    pairs = paths.exposed_pairs(f, {frozenset(("a0_0", "c1_1"))}, set())
    pod0 = {h.name for h in f.hosts if h.switch.startswith("e0_")}
    assert len(pairs) == 2 * 4 * 12  # 4 hosts of pod 0 with each of 12 others, both ways
    assert all((a in pod0) != (b in pod0) for a, b in pairs)


def test_a_hosts_only_link_leaves_no_path_and_nothing_to_probe():
    f = fabric()
    link = frozenset(("h1", "e0_0"))
    assert len(paths.exposed_pairs(f, {link}, set())) == 30
    assert sorted(paths.cut_off(f, {link})) == sorted(
        [("h1", h.name) for h in f.hosts[1:]] + [(h.name, "h1") for h in f.hosts[1:]]
    )
    assert paths.cut_off(f, {frozenset(("a0_0", "c1_1"))}) == []


def test_sample_is_bounded_seeded_and_prefers_hosts_no_job_uses():
    pairs = [(f"h{i}", f"h{i + 1}") for i in range(100)]
    assert paths.sample(pairs, 24, 3) == paths.sample(pairs, 24, 3)
    assert len(paths.sample(pairs, 24, 3)) == 24 and paths.sample(pairs[:5], 24, 3) == pairs[:5]
    busy = {f"h{i}" for i in range(0, 100, 2)}  # every pair has one busy end but...
    free_pairs = [("h1001", "h1003"), ("h1003", "h1005")]
    chosen = paths.sample(pairs + free_pairs, 3, 3, busy)
    assert set(free_pairs) <= set(chosen) and len(chosen) == 3


def trace(start: float, n: int, lost: set[int] = frozenset(), rtt=0.001):
    return [(s, start + s * P + rtt) for s in range(n) if s not in lost]


def test_recovery_is_the_first_reply_after_the_outage():
    fault = 100 + 50 * P + 0.0005  # just after probe 50 left
    got = trace(100, 300, lost={50, 51, 52})
    lost, rec = probe.recovery(got, fault, 100 + 300 * P)
    assert lost == 3 and rec == pytest.approx(3 * P + 0.0005, abs=1e-6)


def test_no_lost_probe_is_no_disruption_and_late_loss_is_not_the_faults():
    fault = 100 + 50.5 * P
    assert probe.recovery(trace(100, 300), fault, 103) == (0, 0.0)
    late = trace(100, 300, lost={50 + int(probe.ONSET_S / P) + 5})
    assert probe.recovery(late, fault, 103) == (0, 0.0)


def test_replies_that_stop_are_not_a_recovery():
    fault = 100 + 50.5 * P
    lost, rec = probe.recovery(trace(100, 51), fault, fault + probe.WINDOW_S)
    assert rec is None and lost == pytest.approx(probe.WINDOW_S / P, rel=0.02)


def test_baseline_loss_and_summary():
    fault = 100 + 100.5 * P
    assert probe.baseline_loss(trace(100, 300, lost=set(range(0, 101, 2))), fault) == 0.5
    assert probe.baseline_loss([], fault) == 1.0
    pairs = [
        probe.PairRecovery("h1", "h2", 2, 0.03),
        probe.PairRecovery("h1", "h3", 0, 0.0),
        probe.PairRecovery("h2", "h5", 1, 0.01),
        probe.PairRecovery("h3", "h4", 4, 0.05),
    ]
    s = probe.summarize(pairs, congested=1)
    assert (s["disrupted_pairs"], s["recovery_s"], s["recovery_p50_s"]) == (3, 0.05, 0.03)
    assert s["worst_pair"] == "h3->h4" and s["congested_pairs"] == 1
    s = probe.summarize([*pairs, probe.PairRecovery("h4", "h1", 500, None)])
    assert s["recovery_s"] is None and s["unrecovered_pairs"] == 1
    assert probe.summarize([], congested=5)["recovery_s"] is None  # nothing measured


def test_fping_reply_lines_parse():
    text = (
        "[1796157365.97332] 10.0.0.2 : [0], 64 bytes, 0.132 ms (0.132 avg, 0% loss)\n"
        "[1796157365.98329] 10.0.0.2 : [2], 64 bytes, 0.028 ms (0.080 avg, 33% loss)\n"
        "[1796157365.98448] 10.1.0.3 : [1], 64 bytes, 0.117 ms (0.230 avg, 0% loss)\n"
    )
    assert probe.replies(text) == {
        "10.0.0.2": [(0, 1796157365.97332), (2, 1796157365.98329)],
        "10.1.0.3": [(1, 1796157365.98448)],
    }


# ------------------------------------------------------------ the server goes on


class FakeChannel(Channel):
    """Worker `peer` pushes gradients full of peer+1; it can die or go silent."""

    def __init__(self, peer: int, dies_at: int | None = None, silent_at: int | None = None):
        self.peer, self.dies_at, self.silent_at = peer, dies_at, silent_at
        self.woken = threading.Event()
        self.pulls: list[int] = []

    def send(self, msg_id, data):
        self.pulls.append(msg_id)

    def recv(self, msg_id, out, reliable=False):
        if msg_id == self.dies_at:
            raise ConnectionError("peer closed the connection mid-message")
        if msg_id == self.silent_at:
            self.woken.wait(10)
            raise ConnectionError("aborted")
        out[:] = self.peer + 1
        return MessageStats(msg_id, out.nbytes, 0.0)

    def close(self):
        self.woken.set()


class FakeTransport(Transport):
    name = "fake"

    def __init__(self, channels):
        self.channels = channels

    def listen(self, ip, port):
        channels = self.channels

        class L(Listener):
            def accept(self, peers, timeout_s):
                return {c.peer: c for c in channels}

            def close(self):
                pass

        return L()

    def connect(self, ip, port, rank, timeout_s):
        raise NotImplementedError


def server(channels, timeout_s):
    srv = PSServer(FakeTransport(channels), "x", 0, len(channels), np.zeros(3, np.float32),
                   lr=1.0, momentum=0.0, worker_timeout_s=timeout_s)  # fmt: skip
    srv.accept()
    return srv


def test_a_dead_worker_is_dropped_and_the_mean_is_over_those_that_delivered():
    channels = [FakeChannel(0), FakeChannel(1), FakeChannel(2, dies_at=1), FakeChannel(3)]
    srv = server(channels, timeout_s=5.0)
    srv.step(0)
    np.testing.assert_allclose(srv.mean, (1 + 2 + 3 + 4) / 4)
    srv.step(1)
    np.testing.assert_allclose(srv.mean, (1 + 2 + 4) / 3)  # worker 2 is gone
    srv.step(2)
    np.testing.assert_allclose(srv.mean, (1 + 2 + 4) / 3)
    assert srv.live_workers == 3 and [(w.rank, w.iteration) for w in srv.lost] == [(2, 1)]
    assert channels[2].pulls == [0] and channels[0].pulls == [0, 1, 2]
    # SGD with lr 1 and no momentum: params = -(sum of the means)
    np.testing.assert_allclose(srv.params, -(2.5 + 7 / 3 + 7 / 3), rtol=1e-6)


def test_a_silent_worker_is_dropped_after_the_timeout_and_its_thread_woken():
    channels = [FakeChannel(0), FakeChannel(1, silent_at=0), FakeChannel(2)]
    srv = server(channels, timeout_s=0.3)
    began = time.monotonic()
    srv.step(0)
    assert 0.3 <= time.monotonic() - began < 3
    np.testing.assert_allclose(srv.mean, (1 + 3) / 2)
    assert srv.lost[0].reason == "silent for 0.3 s" and channels[1].woken.is_set()


def test_under_on_failure_fail_a_dead_worker_fails_the_server():
    srv = server([FakeChannel(0), FakeChannel(1, dies_at=0)], timeout_s=None)
    with pytest.raises(ConnectionError):
        srv.step(0)


def test_when_every_worker_is_gone_the_server_gives_up():
    srv = server([FakeChannel(0, dies_at=0), FakeChannel(1, dies_at=0)], timeout_s=1.0)
    with pytest.raises(ConnectionError, match="every worker is gone"):
        srv.step(0)


def test_the_terminal_summary_shows_each_fault(tmp_path):
    from rich.console import Console

    from testbed.faults.runner import FAULT_COLUMNS
    from testbed.results.summary import faults_table

    assert faults_table(tmp_path) == []  # no faults.csv: no table
    (tmp_path / "faults.csv").write_text(
        ",".join(FAULT_COLUMNS) + "\n"
        "5.0,5.61,link a0_0-c1_1 down,5.62,5.70,0.09,24,20,0.03,slowest h1->h6\n"
        "7.0,7.60,controller kill,7.61,,,,,,not restarted\n"
    )
    console = Console(width=200, record=True)
    for table in faults_table(tmp_path):
        console.print(table)
    text = console.export_text()
    assert "link a0_0-c1_1 down" in text and "90.0" in text and "20/24" in text
    assert "controller kill" in text and "not restarted" in text
