"""What tc reports about the links' queues, read and parsed: qdisc statistics per
interface (one tc call for many devices), HTB class listings, and which shapers held
packets back (the link monitor samples these)."""

from __future__ import annotations

import json
import re

from testbed import shell
from testbed.network import tc

# tc prints HTB tokens in psched ticks of 64 ns (PSCHED_NS2TICKS)
TICK_US = 64 / 1000
DEVICE_MARK = "@dev "
CLASS_LINE = re.compile(r"^class (\S+) (\S+) ")
BACKLOG = re.compile(r"^ backlog \S+ (\d+)p")
TOKENS = re.compile(r"^ tokens: (-?\d+) ")


def qdisc_stats(qdiscs: list[dict]) -> dict[str, dict]:
    """Interface -> {htb_drops, netem_drops, bands} from ``tc -s -j qdisc show`` entries.

    HTB's drops are queue overflow; the netem root's drops are its emulated loss plus
    every drop of its child HTB, so loss = netem_drops - htb_drops (`testbed.network.tc`).
    """
    stats: dict[str, dict] = {}
    for q in qdiscs:
        entry = stats.setdefault(
            q["dev"], {"htb_drops": 0, "netem_drops": 0, "backlog_pkts": 0, "bands": {}}
        )
        if q["kind"] == "htb" and q.get("handle") == tc.ROOT:
            entry["htb_drops"] = q.get("drops", 0)
            entry["backlog_pkts"] = q.get("qlen", 0)  # every band's packets queued now
        elif q["kind"] == "netem" and q.get("handle") == tc.NETEM:
            entry["netem_drops"] = q.get("drops", 0)
        elif q["kind"] == "pfifo" and q.get("parent", "").startswith(tc.ROOT):
            band = int(q["parent"].split(":")[1], 16) - tc.FIRST_LEAF_HEX
            entry["bands"][band] = {
                "bytes": q.get("bytes", 0),
                "packets": q.get("packets", 0),
                "drops": q.get("drops", 0),
            }
    return stats


def shaper_states(listing: str) -> dict[str, dict]:
    """Interface -> {link_tokens_us, held_back} from `tc_listing`'s class text: each
    device's leaves' backlog and its link class's tokens, for the devices whose leaves
    still held packets when read (the queue may have drained since the qdisc read)."""
    devices: dict[str, dict] = {}
    dev = kind = classid = None
    for line in listing.splitlines():
        if line.startswith(DEVICE_MARK):
            dev = line[len(DEVICE_MARK) :].strip()
            devices[dev] = {"backlog": 0, "tokens": None}
        elif dev and (m := CLASS_LINE.match(line)):
            kind, classid = m.groups()
        elif dev and kind == "htb" and (m := BACKLOG.match(line)) and classid != tc.LINK_CLASS:
            devices[dev]["backlog"] += int(m.group(1))  # leaves hold the packets
        elif dev and kind == "htb" and classid == tc.LINK_CLASS and (m := TOKENS.match(line)):
            devices[dev]["tokens"] = int(m.group(1)) * TICK_US
    return {
        dev: {"link_tokens_us": round(v["tokens"], 1), "held_back": int(v["tokens"] >= 0)}
        for dev, v in devices.items()
        if v["backlog"] and v["tokens"] is not None
    }


def tc_listing(pid: int | None, devices: list[str]) -> tuple[list[dict], str]:
    """Each device's qdiscs (JSON) and HTB classes (text, each after an "@dev NAME"
    line: tc prints neither the device nor, here, JSON for HTB classes), from one
    ``tc -batch`` process in namespace `pid`. Each device's qdiscs come as one JSON line
    and tell the devices' listings apart; if a device has gone (teardown), nothing."""
    if not devices:
        return [], ""
    commands = [f"{what} show dev {dev}" for dev in devices for what in ("qdisc", "class")]
    proc = shell.run(["tc", "-s", "-j", "-force", "-batch", "-"], ns_pid=pid, check=False,
                     input_text="\n".join(commands) + "\n")  # fmt: skip
    return split_listing(proc.stdout, devices)


def split_listing(stdout: str, devices: list[str]) -> tuple[list[dict], str]:
    """`tc_listing`'s output by device (see there); nothing unless every device's
    qdisc line is there, in order. tc 6.1 (Debian 12) prints the classes as text; tc
    6.15 (Debian 13) prints them as JSON too, which becomes the same text here."""
    qdiscs, text, pending = [], [], iter(devices)
    for line in stdout.splitlines():
        if line.startswith("["):
            try:
                listing = json.loads(line)
                if text and all("class" in entry for entry in listing):
                    text += _class_text(listing)  # the current device's classes
                    continue
                dev = next(pending)
            except (json.JSONDecodeError, StopIteration):
                return [], ""
            qdiscs += [{**q, "dev": q.get("dev", dev)} for q in listing]
            text.append(f"{DEVICE_MARK}{dev}")
        elif text:
            text.append(line)
    if next(pending, None) is not None:
        return [], ""
    return qdiscs, "\n".join(text) + "\n"


def _class_text(classes: list[dict]) -> list[str]:
    """tc's text for the class fields `shaper_states` reads, from its JSON entries."""
    lines = []
    for c in classes:
        stats = c.get("stats", {})
        lines.append(f"class {c['class']} {c.get('handle', '?')} ")
        if "qlen" in stats:
            lines.append(f" backlog {stats.get('backlog', 0)}b {stats['qlen']}p requeues 0")
        if "tokens" in stats:
            lines.append(f" tokens: {stats['tokens']} ctokens: {stats.get('ctokens', 0)}")
    return lines


def tc_stats(pid: int | None, dev: str | None = None) -> list[dict]:
    """Qdisc statistics of namespace `pid` (root if None), optionally of one device."""
    proc = shell.run(
        ["tc", "-s", "-j", "qdisc", "show", *(["dev", dev] if dev else [])], ns_pid=pid, check=False
    )
    try:
        listing = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []
    except json.JSONDecodeError:
        return []
    for qdisc in listing:
        qdisc.setdefault("dev", dev)  # tc omits it when asked about one device
    return listing
