"""The testbed's OpenFlow 1.3 controller: an os-ken (Ryu API) app, one screen long.

It only dispatches: when a switch connects, it sends the flow-mods the routing and
priority policies return for that switch, then a barrier; once every switch of the
topology has answered its barrier it writes the "all switches programmed" file the
harness waits for. Errors from switches are logged and counted in that file.
"""

from __future__ import annotations

import json
import os

from controllers.compat import (
    CONFIG_DISPATCHER,
    MAIN_DISPATCHER,
    app_manager,
    cfg,
    ofp,
    ofp_event,
    parser,
    set_ev_cls,
)
from controllers.ofmsg import clear_switch, discard_lost
from controllers.priority import make_priority
from controllers.routing import make_routing
from controllers.topology import Fabric

cfg.CONF.register_cli_opts(
    [
        cfg.StrOpt("topology", help="topology JSON written by the harness"),
        cfg.StrOpt("routing", default="two-level", help="two-level | ecmp"),
        cfg.StrOpt("priority", default="none", help="prioritization policy"),
        cfg.StrOpt("ready-file", help="written once every switch is programmed"),
    ],
    group="mlnet",
)


class TestbedController(app_manager.OSKenApp):
    """Proactive routing + priority marking for the switches named in the topology."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        conf = cfg.CONF.mlnet
        self.fabric = Fabric.load(conf.topology)
        self.policies = [make_priority(self.fabric, conf.priority),
                         make_routing(self.fabric, conf.routing)]
        self.ready_file = conf.ready_file
        self.pending = set(self.fabric.switches)
        self.errors = 0

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_switch_features(self, ev):
        dp = ev.msg.datapath
        name = self.fabric.by_dpid(dp.id)
        if name is None:
            self.logger.warning("ignoring unknown switch dpid=%016x", dp.id)
            return
        msgs = [*clear_switch(), discard_lost(),
                *(m for policy in self.policies for m in policy.messages(name))]
        for msg in msgs:
            msg.datapath = dp  # policies build messages without a datapath
            dp.send_msg(msg)
        dp.send_msg(parser.OFPBarrierRequest(dp))
        self.logger.info("programmed %s (dpid=%016x): %d messages", name, dp.id, len(msgs))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def on_barrier_reply(self, ev):
        name = self.fabric.by_dpid(ev.msg.datapath.id)
        if name in self.pending:
            self.pending.discard(name)
            if not self.pending:
                self._signal_ready()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev):
        self.errors += 1
        msg = ev.msg
        self.logger.error("switch dpid=%016x error type=%d code=%d", msg.datapath.id,
                          msg.type, msg.code)

    def _signal_ready(self):
        self.logger.info("all switches programmed (%d, errors=%d)",
                         len(self.fabric.switches), self.errors)
        if self.ready_file:
            tmp = self.ready_file + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"switches": len(self.fabric.switches), "errors": self.errors}, fh)
            os.replace(tmp, self.ready_file)  # atomic: the harness never reads half a file
