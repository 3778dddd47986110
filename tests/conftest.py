"""Shared fixtures and the integration-tier skip rule."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _integration_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (Mininet creates namespaces and OVS bridges)"
    for tool in ("mnexec", "ovs-vsctl", "fping"):
        if shutil.which(tool) is None:
            return f"{tool} missing (run `sudo make bootstrap`)"
    if subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True).returncode:
        return "Open vSwitch daemons are not running (`sudo make bootstrap` starts them)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _integration_skip_reason()
    if reason is None:
        return
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
