"""The servers of a `cluster:` spec: how we reach them, and what each one offers.

Mininet Cluster Edition (`mininet.examples.cluster`) drives every remote node over
ssh as the invoking user, with passwordless sudo on the far side, and needs Mininet
and Open vSwitch on every server. `check_servers` verifies each of those before
anything is built (``testbed doctor --cluster SPEC``), plus the clock offset: the
harness merges every server's timestamps into one run directory, so a server whose
clock is off shifts its rows by that much.

The harness runs on the first server, which also runs the controller. The
controller listens on the first server's address towards the others (the source
address of its route to them), never on 0.0.0.0 and never on a public interface
that no other server uses.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

from testbed.errors import TestbedError
from testbed.shell import ssh_argv

SSH_TIMEOUT_S = 30
CLOCK_SAMPLES = 5
MAX_CLOCK_OFFSET_S = 0.05  # an offset this large shifts a server's rows by a whole RTT
_IPV4 = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


@dataclass
class ServerCheck:
    """What one server offers; `problems` is empty when MininetCluster can use it."""

    server: str
    address: str | None = None
    local: bool = False  # this machine (the first server must be)
    ssh: bool = False
    sudo: bool = False
    mininet: str = ""
    ovs: str = ""
    project: bool = False  # this project's interpreter at the same path
    clock_offset_s: float | None = None
    clock_error_s: float | None = None  # half the best round trip: the offset's bound
    problems: list[str] = field(default_factory=list)


def check_servers(servers: list[str]) -> list[ServerCheck]:
    """One `ServerCheck` per server, in order. Never raises for a server's fault: the
    caller prints every problem at once."""
    checks = [check_server(s) for s in servers]
    if checks and not checks[0].local:
        checks[0].problems.append(
            "the first server must be this machine (it runs the harness and the controller)"
        )
    return checks


def check_server(server: str) -> ServerCheck:
    """ssh without a password, sudo without one, Mininet and OVS versions, clock offset."""
    check = ServerCheck(server, address=resolve(server))
    if check.address is None:
        check.problems.append(f"cannot resolve {server} to an IPv4 address")
        return check
    check.local = check.address in local_addresses()
    # The project at the same path: a server runs its training processes with it.
    project = f"test -x {shlex.quote(sys.executable)} && echo project-ok"
    probe = _ssh(server, ["sh", "-c", "sudo -n true && echo sudo-ok; mn --version 2>&1; "
                          f"ovs-vsctl --version | head -n 1; {project}"])  # fmt: skip
    if probe is None or probe.returncode == 255:
        detail = probe.stderr.strip().splitlines()[-1:] if probe else ["timed out"]
        check.problems.append(f"ssh -o BatchMode=yes {server} failed: {''.join(detail)}")
        return check
    check.ssh = True
    lines = probe.stdout.splitlines()
    check.sudo = "sudo-ok" in lines
    check.mininet = next((x for x in lines if re.fullmatch(r"\d+\.\d+\.\d+\S*", x)), "")
    check.ovs = next((x.split()[-1] for x in lines if x.startswith("ovs-vsctl")), "")
    if not check.sudo:
        check.problems.append("sudo asks for a password (MininetCluster runs `sudo -E` there)")
    if not check.mininet:
        check.problems.append("Mininet is not installed (`mn --version` failed)")
    if not check.ovs:
        check.problems.append("Open vSwitch is not installed (`ovs-vsctl --version` failed)")
    check.project = "project-ok" in lines
    if not check.project:
        check.problems.append(
            f"the project is not at {sys.executable} there (check it out at the same path "
            "and run `sudo make bootstrap`)"
        )
    _check_clock(check)
    return check


def _check_clock(check: ServerCheck) -> None:
    """The server's clock offset, with its bound; a problem if it is too far off."""
    best = clock_offset(check.server)
    if best is None:
        check.problems.append("clock check failed: the server did not answer with a time")
        return
    offset, error = best
    check.clock_offset_s, check.clock_error_s = round(offset, 4), round(error, 4)
    if abs(offset) - error > MAX_CLOCK_OFFSET_S:
        check.problems.append(
            f"its clock is {offset:+.3f} s off this machine's (run NTP on every server)"
        )


def clock_offset(server: str) -> tuple[float, float] | None:
    """(server's clock minus ours, the bound on that), NTP-style: over one ssh
    connection, ask for the time `CLOCK_SAMPLES` times and keep the sample with the
    shortest round trip; its midpoint is the estimate and half the trip the bound."""
    script = "while read -r _; do date +%s.%N; done"
    argv = ssh_argv(server, ["sh", "-c", script])
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1,
        )  # fmt: skip
    except OSError:
        return None
    best: tuple[float, float] | None = None  # (round trip, offset)
    try:
        for _ in range(CLOCK_SAMPLES):
            sent = time.time()
            proc.stdin.write("t\n")
            proc.stdin.flush()
            remote = float(proc.stdout.readline())
            back = time.time()
            sample = (back - sent, remote - (sent + back) / 2)
            best = sample if best is None or sample[0] < best[0] else best
    except (OSError, ValueError):
        return None
    finally:
        proc.kill()
        proc.wait()
    return None if best is None else (best[1], best[0] / 2)


def _ssh(server: str, argv: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ssh_argv(server, argv), capture_output=True, text=True, timeout=SSH_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    except FileNotFoundError:
        raise TestbedError("ssh is not installed (`apt install openssh-client`)") from None


def resolve(server: str) -> str | None:
    """`server`'s IPv4 address, as MininetCluster finds it (an address, or getent)."""
    try:
        return str(ipaddress.IPv4Address(server))
    except ValueError:
        pass
    out = subprocess.run(["getent", "ahostsv4", server], capture_output=True, text=True)
    found = _IPV4.findall(out.stdout)
    return found[0] if found else None


def local_addresses() -> set[str]:
    """This machine's IPv4 addresses, loopback included."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    return {m.split("/")[0] for m in re.findall(r"inet (\S+)", out.stdout)}


def controller_address(servers: list[str]) -> str:
    """Where the controller listens: this machine's source address on its route to the
    second server. Every server's switches must reach it; 0.0.0.0 would also expose
    the controller on every other interface."""
    far = resolve(servers[1])
    if far is None:
        raise TestbedError(f"cluster.servers: cannot resolve {servers[1]} to an IPv4 address")
    out = subprocess.run(["ip", "-o", "route", "get", far], capture_output=True, text=True)
    match = re.search(r"\bsrc (\S+)", out.stdout)
    if not match:
        raise TestbedError(f"cluster.servers: this machine has no route to {servers[1]} ({far})")
    return match.group(1)
