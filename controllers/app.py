"""The testbed's OpenFlow 1.3 controller: an os-ken (Ryu API) app, one screen long.

It only dispatches. When a switch connects it sends what the policies return for
it (priority marks, per-job byte counters, routes), then a barrier; once every switch
of the topology has answered, it writes the "all switches programmed" file the
harness waits for. For policies that need traffic counters (las) it polls flow
statistics every poll_ms and sends back whatever the policy answers. Class changes
go to controller.csv.
"""

from __future__ import annotations

import csv
import json
import os
import time

from controllers.accounting import Accounting
from controllers.compat import (
    CONFIG_DISPATCHER,
    MAIN_DISPATCHER,
    app_manager,
    cfg,
    hub,
    ofp,
    ofp_event,
    parser,
    set_ev_cls,
)
from controllers.contract import JobsDoc, ReadyReport
from controllers.ofmsg import CLASSIFY_TABLE, clear_switch, discard_lost
from controllers.priority import COOKIE_MASK, COOKIE_TAG, make_priority
from controllers.routing import make_routing
from controllers.topology import Fabric

cfg.CONF.register_cli_opts(
    [
        cfg.StrOpt("topology", help="topology JSON written by the harness"),
        cfg.StrOpt("jobs", help="jobs and priority policy JSON written by the harness"),
        cfg.StrOpt("routing", default="two-level", help="two-level | ecmp"),
        cfg.StrOpt("ready-file", help="written once every switch is programmed"),
    ],
    group="mlnet",
)


PORT_COLUMNS = ["time_s", "switch", "port", "neighbor", "state", "entries_changed", "switches"]


def _is_down(desc) -> bool:
    return bool(desc.state & ofp.OFPPS_LINK_DOWN or desc.config & ofp.OFPPC_PORT_DOWN)


class TestbedController(app_manager.OSKenApp):
    """Proactive routing + priority marking for the switches named in the topology."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        conf = cfg.CONF.mlnet
        self.fabric = Fabric.load(conf.topology)
        with open(conf.jobs) as fh:
            self.jobs_config = JobsDoc.from_json(json.load(fh))
        self.state_file = self.jobs_config.state_json
        self.priority = make_priority(self.fabric, self.jobs_config, self._resume())
        self.routing = make_routing(self.fabric, conf.routing)
        self.accounting = Accounting(self.fabric, self.jobs_config)
        self.ready_file = conf.ready_file
        self.pending = set(self.fabric.switches)
        self.datapaths: dict[str, object] = {}
        self.names: dict[object, str] = {}  # datapath -> switch name
        self.errors = 0
        self.ports_down: set[tuple[str, int]] = set()  # (switch, port) reported down
        self._log_events()
        if self.priority.polls:
            hub.spawn(self._poll)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_switch_features(self, ev):
        # The id comes from the reply itself: `dp.id` is set by os-ken's own
        # OFPHandler, which sees this event on another thread and may not have run yet
        # (seen under QEMU's TCG: dp.id was None and a switch was never programmed).
        dp, dpid = ev.msg.datapath, ev.msg.datapath_id
        name = self.fabric.by_dpid(dpid)
        if name is None:
            self.logger.warning("ignoring unknown switch dpid=%016x", dpid)
            return
        self.datapaths[name], self.names[dp] = dp, name
        msgs = [
            *clear_switch(),
            discard_lost(),
            *self.priority.messages(name),
            *self.accounting.messages(name),
            *self.routing.messages(name),
        ]
        self._send(dp, msgs)
        dp.send_msg(parser.OFPBarrierRequest(dp))
        dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))
        self.logger.info("programmed %s (dpid=%016x): %d messages", name, dpid, len(msgs))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def on_barrier_reply(self, ev):
        name = self.names.get(ev.msg.datapath)
        if name in self.pending:
            self.pending.discard(name)
            if not self.pending:
                self._signal_ready()

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def on_flow_stats(self, ev):
        name = self.names[ev.msg.datapath]
        counters = [(s.cookie, s.byte_count) for s in ev.msg.body]
        for switch, msg in self.priority.on_flow_stats(name, counters):
            self._send(self.datapaths[switch], [msg])
        self._log_events()
        self._save_state()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def on_port_status(self, ev):
        """A port went down or came back: reroute around its link, or back over it."""
        name, desc = self.names.get(ev.msg.datapath), ev.msg.desc
        gone = ev.msg.reason == ofp.OFPPR_DELETE
        self._port_changed(name, desc.port_no, gone or _is_down(desc))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_port_desc(self, ev):
        """A (re)connected switch's ports: the links already down when this controller
        started (after a restart) are routed around like fresh failures."""
        name = self.names.get(ev.msg.datapath)
        for desc in ev.msg.body:
            if desc.port_no < ofp.OFPP_MAX and _is_down(desc):
                self._port_changed(name, desc.port_no, True)

    def _port_changed(self, name, port_no, port_down):
        # Both ends report the same change; the second report changes nothing. A link is
        # up only when both of its ends are: each end reports on its own, in any order
        # (OVS often reports the far end "up" before it reports it down).
        neighbor = self.fabric.neighbor_on(name, port_no) if name else None
        (self.ports_down.add if port_down else self.ports_down.discard)((name, port_no))
        changes = {}
        if neighbor in self.fabric.switches:
            far = (neighbor, self.fabric.ports[neighbor][name])
            down = (name, port_no) in self.ports_down or far in self.ports_down
            changes = self.routing.link_changed(name, neighbor, up=not down)
            for switch, msgs in changes.items():
                if switch in self.datapaths:
                    self._send(self.datapaths[switch], msgs)
        # A host's link has no other path: logged, nothing to reroute.
        self._log_port(name, port_no, neighbor, port_down, changes)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev):
        self.errors += 1
        msg = ev.msg
        self.logger.error(
            "switch %s error type=%d code=%d", self.names.get(msg.datapath), msg.type, msg.code
        )

    def _poll(self):
        """Ask the switches holding marking entries for their counters, forever."""
        while True:
            hub.sleep(self.jobs_config.poll_ms / 1000)
            for name in self.priority.stat_switches():
                dp = self.datapaths.get(name)
                if dp is not None:
                    dp.send_msg(
                        parser.OFPFlowStatsRequest(
                            dp,
                            0,
                            CLASSIFY_TABLE,
                            ofp.OFPP_ANY,
                            ofp.OFPG_ANY,
                            COOKIE_TAG,
                            COOKIE_MASK,
                            parser.OFPMatch(),
                        )
                    )

    def _send(self, dp, msgs):
        for msg in msgs:
            msg.datapath = dp  # policies build messages without a datapath
            dp.send_msg(msg)

    def _log_events(self):
        """Append class changes to controller.csv (time relative to the run start)."""
        rows = [
            [
                round(time.time() - self.jobs_config.t0, 3),
                job,
                cls,
                self.priority.dscp[cls],
                reason,
            ]
            for job, cls, reason in self.priority.take_events()
        ]
        path = self.jobs_config.events_csv
        if path:
            new = not os.path.exists(path)
            with open(path, "a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(["time_s", "job", "class", "dscp", "reason"])
                writer.writerows(rows)
        for row in rows:
            self.logger.info("class change: %s", row)

    def _resume(self) -> dict | None:
        """A killed controller's policy state, when this one restarts its run."""
        if self.state_file and os.path.exists(self.state_file):
            with open(self.state_file) as fh:
                return json.load(fh)
        return None

    def _save_state(self):
        if self.state_file:
            tmp = self.state_file + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(self.priority.state(), fh)
            os.replace(tmp, self.state_file)  # a kill never leaves half a file

    def _log_port(self, name, port_no, neighbor, port_down, changes):
        """Append one port change to ports.csv: when the controller learnt of it and
        how many entries it changed (the harness's faults.csv reads detection here)."""
        entries = sum(map(len, changes.values()))
        row = [round(time.time() - self.jobs_config.t0, 4), name, port_no, neighbor,
               "down" if port_down else "up", entries, len(changes)]  # fmt: skip
        path = self.jobs_config.ports_csv
        if path:
            new = not os.path.exists(path)
            with open(path, "a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(PORT_COLUMNS)
                writer.writerows([row])
        self.logger.info("port %s:%s (to %s) %s: %d entries changed on %d switches", *row[1:])

    def _signal_ready(self):
        self.logger.info(
            "all switches programmed (%d, errors=%d)", len(self.fabric.switches), self.errors
        )
        if self.ready_file:
            tmp = self.ready_file + ".tmp"
            with open(tmp, "w") as fh:
                report = ReadyReport(switches=len(self.fabric.switches), errors=self.errors)
                json.dump(report.to_json(), fh)
            os.replace(tmp, self.ready_file)  # atomic: the harness never reads half a file
