"""Ryu app API from os-ken (Ryu's maintained fork), or from Ryu itself when os-ken
is absent. Ryu 4.34 does not import on Python >= 3.10, so os-ken comes first."""

from __future__ import annotations

try:
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import controller as _controller  # noqa: F401  (registers ofp opts)
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    FRAMEWORK = "os-ken"
except ImportError:  # pragma: no cover - exercised only where Ryu is installed instead
    from ryu import cfg  # type: ignore[no-redef]
    from ryu.base import app_manager  # type: ignore[no-redef]
    from ryu.controller import controller as _controller  # type: ignore[no-redef] # noqa: F401
    from ryu.controller import ofp_event  # type: ignore[no-redef]
    from ryu.controller.handler import (  # type: ignore[no-redef]
        CONFIG_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from ryu.lib import hub  # type: ignore[no-redef]
    from ryu.ofproto import ofproto_v1_3 as ofp  # type: ignore[no-redef]
    from ryu.ofproto import ofproto_v1_3_parser as parser  # type: ignore[no-redef]

    FRAMEWORK = "ryu"

__all__ = [
    "CONFIG_DISPATCHER",
    "FRAMEWORK",
    "MAIN_DISPATCHER",
    "app_manager",
    "cfg",
    "hub",
    "ofp",
    "ofp_event",
    "parser",
    "set_ev_cls",
]
