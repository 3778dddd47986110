"""links.csv: what every link direction carried and dropped, sampled while a run goes.

Every direction (src's egress towards dst) is read from counters that exist
anyway, so sampling adds no probes to the network:

- bytes/packets: the switch-side end of each veth in the root namespace (the host
  end of a veth sends exactly what the switch end receives);
- qdisc drops (queue overflow): the HTB qdisc of the egress interface's tc tree;
- emulated-loss drops and offered packets: the nft counters of the direction (packets
  marked lost at the sender's egress, discarded at the receiver), or for netem the
  netem root's drops beyond its child HTB's (see `testbed.network.tc`).

`report()` condenses the samples into one entry per direction for metadata.json:
configured vs measured loss (with the direction's binomial 99% interval) and
configured vs achieved throughput. Whether any direction's loss is off is judged over
all of them at once, family-wise (`testbed.results.fidelity`). `backlog_pkts` is the
packets queued in the direction's tc tree at the sample (HTB's qlen).

Where a tree holds packets, its HTB classes are read too (`tc -s class show`): the
link class's token level as of its last dequeue (`link_tokens_us`, in µs of the
link's rate), and `held_back`: 1 when packets waited while that bucket still held
tokens (the shaper would have sent them: something else, a late dequeue on a busy
CPU or a stopped device, held them), 0 when the bucket was in debt (the shaper
itself held them back, as a link running at its rate does). The fidelity verdict
counts the samples of each kind (`testbed.results.fidelity.slow_links`).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.network import loss, tc
from testbed.network.protocol import Network
from testbed.network.qdiscs import qdisc_stats, shaper_states, tc_listing, tc_stats
from testbed.sampling import Periodic
from testbed.stats import binomial_interval
from topologies import Direction

log = logging.getLogger("testbed.monitor")

COLUMNS = [
    "time_s",
    "link",
    "direction",
    "src",
    "dst",
    "interface",
    "tx_bytes",
    "tx_packets",
    "rx_bytes",
    "rx_packets",
    "qdisc_drops",
    "loss_drops",
    "offered_packets",
    "backlog_pkts",
    "link_tokens_us",
    "held_back",
    "tier",
]
STATS = ("tx_bytes", "tx_packets", "rx_bytes", "rx_packets")
CLASS_COLUMNS = ["time_s", "direction", "interface", "band", "dscp", "bytes", "packets", "drops"]


@dataclass
class _Peak:
    """Running peak of one direction's sampled sending rate."""

    last_bytes: int = 0
    last_time: float = 0.0
    peak_mbps: float = 0.0
    last: dict = field(default_factory=dict)


class LinkMonitor:
    """Samples every link direction each `interval_s` into `path` (a CSV), in a thread."""

    def __init__(
        self,
        net: Network,
        path: Path,
        interval_s: float,
        t0: float,
        classes_path: Path | None = None,
        hosts: list[str] | None = None,
    ):
        self.net = net
        # Whose namespaces to read queue statistics from each sample (None: every host).
        # One tc call per host namespace per sample is ~1,000 calls a second on a k=16
        # fat-tree; idle hosts' egress queues are then left unread (empty columns).
        self.hosts = net.topo.host_names() if hosts is None else hosts
        self.unread = set(net.topo.host_info) - set(self.hosts)
        self.path = path
        self.t0 = t0
        self.directions = net.topo.directions()
        self.loss_plan = loss.plan(net.topo, net.plane)
        self.peaks = {d.name: _Peak() for d in self.directions}
        self._counters: dict[str, dict[str, int]] | None = None  # this sample's, if read at once
        self._periodic = Periodic("link-monitor", interval_s, self.sample)
        self._fh = open(path, "w", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=COLUMNS)
        self._csv.writeheader()
        # With priority bands, per-band counters of switch ports go to a second table.
        self.banded = [d for d in self.directions if net.bands_of(d.src) > 1]
        self._classes_fh = (
            open(classes_path, "w", newline="") if classes_path and self.banded else None
        )
        self._classes_csv = (
            csv.DictWriter(self._classes_fh, fieldnames=CLASS_COLUMNS) if self._classes_fh else None
        )
        if self._classes_csv:
            self._classes_csv.writeheader()

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        """Stop sampling after one last sample (so the totals are complete). Idempotent."""
        self._periodic.stop()
        for fh in (self._fh, self._classes_fh):
            if fh is not None and not fh.closed:
                fh.close()

    # ------------------------------------------------------------------ sampling

    def sample(self) -> list[dict]:
        """Read every counter once and append one row per direction."""
        now = time.time()
        self._counters = self._interface_stats()
        qdiscs, classes = self._qdisc_stats()
        shapers = shaper_states(classes)
        nft = self._loss_counters()
        rows = []
        for d in self.directions:
            tree = self.net.tree_interface(d)
            qdisc = None if d.src in self.unread else qdiscs.get(tree, {})
            row = self._row(d, now, qdisc, nft.get(d.name))
            row.update(shapers.get(tree, {}))
            self._track_peak(d, row, now)
            rows.append(row)
        if not self._fh.closed:
            self._csv.writerows(rows)
            self._fh.flush()
        if self._classes_csv and not self._classes_fh.closed:
            self._classes_csv.writerows(self._band_rows(now, qdiscs))
            self._classes_fh.flush()
        return rows

    def _band_rows(self, now: float, qdiscs: dict[str, dict]) -> list[dict]:
        rows = []
        for d in self.banded:
            tree = self.net.tree_interface(d)
            for band, stats in sorted(qdiscs.get(tree, {}).get("bands", {}).items()):
                rows.append(
                    {
                        "time_s": round(now - self.t0, 3),
                        "direction": d.name,
                        "interface": tree,
                        "band": band,
                        "dscp": tc.CLASS_DSCP[band],
                        **stats,
                    }
                )
        return rows

    def _row(self, d: Direction, now: float, qdisc: dict, counters) -> dict:
        switches = self.net.topo.switch_info
        tree = self.net.tree_interface(d)  # its tx: what left the queue onto the link
        if d.src in switches:
            sent = self._counter(tree)
            tx_b, tx_p = sent["tx_bytes"], sent["tx_packets"]
            if d.dst in switches:
                got = self._counter(d.peer_interface)
                rx_b, rx_p = got["rx_bytes"], got["rx_packets"]
            else:  # a host's end of the veth receives exactly what was sent
                rx_b, rx_p = tx_b, tx_p
        else:  # host egress: what the switch end of its veth received
            got = self._counter(d.peer_interface)
            tx_b = rx_b = got["rx_bytes"]
            tx_p = rx_p = got["rx_packets"]
        read = qdisc is not None
        qdisc = qdisc or {}
        qdisc_drops = qdisc.get("htb_drops", 0)
        loss_drops = (
            counters.dropped if counters else max(0, qdisc.get("netem_drops", 0) - qdisc_drops)
        )
        offered = counters.offered if counters else tx_p + qdisc_drops + loss_drops
        return {
            "time_s": round(now - self.t0, 3),
            "link": d.link.name,
            "direction": d.name,
            "src": d.src,
            "dst": d.dst,
            "interface": tree,
            "tx_bytes": tx_b,
            "tx_packets": tx_p,
            "rx_bytes": rx_b,
            "rx_packets": rx_p,
            "qdisc_drops": qdisc_drops if read else None,
            "loss_drops": loss_drops,
            "offered_packets": offered,
            "backlog_pkts": qdisc.get("backlog_pkts", 0) if read else None,
            "link_tokens_us": None,
            "held_back": None,
            "tier": d.link.tier,
        }

    def _track_peak(self, d: Direction, row: dict, now: float) -> None:
        peak = self.peaks[d.name]
        if peak.last_time:
            dt = now - peak.last_time
            if dt > 0:
                mbps = (row["tx_bytes"] - peak.last_bytes) * 8 / dt / 1e6
                peak.peak_mbps = max(peak.peak_mbps, mbps)
        peak.last_bytes, peak.last_time, peak.last = row["tx_bytes"], now, row

    def _interface_stats(self) -> dict[str, dict[str, int]] | None:
        """A cluster's counters, every server's at once (None: read sysfs here)."""
        return self.net.interface_stats()

    def _counter(self, interface: str) -> dict[str, int]:
        if self._counters is None:
            return _sysfs(interface)
        return self._counters.get(interface, dict.fromkeys(STATS, 0))

    def _loss_counters(self) -> dict[str, loss.LossCounters]:
        """nft counters of every namespace that marks packets lost."""
        counters: dict[str, loss.LossCounters] = {}
        if self.net.emulation.loss_backend == "nftables":
            for owner, ns in self.loss_plan.items():
                if ns.mark:
                    pid = self.net.ns_pid(owner) if owner else None
                    counters.update(loss.read_counters(self.net.nft_table, pid))
        return counters

    def _qdisc_stats(self) -> tuple[dict[str, dict], str]:
        """Interface -> {htb_drops, netem_drops, bands}, and the HTB class listings of
        the trees that held packets (for `shaper_states`; not read on a cluster): one tc
        call for every root-namespace qdisc, one more for the classes of the backlogged
        ones, and one per host for its interface's qdiscs and classes together."""
        root = self.net.root_qdiscs()  # a cluster: every server's root
        if root is not None:
            return qdisc_stats(root), ""
        listings, classes = [tc_stats(None)], []
        for name in self.hosts:
            qdiscs, text = tc_listing(self.net.host(name).pid, [f"{name}-eth0"])
            listings.append(qdiscs)
            classes.append(text)
        stats = qdisc_stats([q for listing in listings for q in listing])
        hosts = {f"{h}-eth0" for h in self.hosts}
        busy = [d for d, q in stats.items() if q["backlog_pkts"] > 0 and d not in hosts]
        classes.append(tc_listing(None, busy)[1])
        return stats, "".join(classes)

    # ------------------------------------------------------------------ summary

    def report(self) -> list[dict]:
        """Per direction that carried traffic or has loss configured: loss and rate checks."""
        out = []
        for d in self.directions:
            last = self.peaks[d.name].last
            if not last or (not last["offered_packets"] and not d.params.loss_pct):
                continue
            out.append(summarize(d, last, self.peaks[d.name].peak_mbps))
        return out


def summarize(d: Direction, last: dict, peak_mbps: float) -> dict:
    """Configured vs measured loss (binomial 99% interval) and throughput of `d`."""
    n, dropped = last["offered_packets"], last["loss_drops"]
    p = d.params.loss_pct / 100
    lo, hi = binomial_interval(0.99, n, p) if n else (0, 0)
    return {
        "direction": d.name,
        "configured_loss_pct": d.params.loss_pct,
        "offered_packets": n,
        "loss_drops": dropped,
        "measured_loss_pct": round(100 * dropped / n, 4) if n else None,
        # this direction's own 99% interval, for reading; the run-wide check corrects
        # for the number of directions (metadata.json fidelity, testbed.results.fidelity)
        "ci99_pct": [round(100 * lo / n, 4), round(100 * hi / n, 4)] if n else None,
        "qdisc_drops": last["qdisc_drops"],
        "configured_mbps": d.params.bw_mbps,
        "peak_mbps": round(peak_mbps, 3),
    }


def _sysfs(interface: str) -> dict[str, int]:
    base = Path("/sys/class/net", interface, "statistics")
    out = {}
    for stat in STATS:
        try:
            out[stat] = int((base / stat).read_text())
        except (OSError, ValueError):  # interface already gone at teardown
            out[stat] = 0
    return out
