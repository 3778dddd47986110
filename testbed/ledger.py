"""What a run created, written down before it is created, so nothing outlives it.

Each run keeps a ledger in ``/run/mlnet-testbed/<run_id>.json``: OVS bridges, root
namespace interfaces, Mininet host shells, process groups it started, nft tables.
`release` removes exactly those (idempotently); `testbed clean` calls it for every
ledger whose owning harness process is gone. Nothing else is ever touched: that is
what separates this from Mininet's destructive ``mn -c``.

A cluster run also records, per server, what it made there (`Ledger.servers`):
bridges, interfaces (tunnel ends included), host shells, the pid files of its
training processes and its scratch directory. `release` removes them on each server
with this same code, run there over ssh (``python -m testbed.ledger``, the part on
stdin): every server has the project at the same path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testbed import shell
from testbed.errors import TestbedError
from testbed.shell import ssh_argv

_SAVING = threading.Lock()

log = logging.getLogger("testbed.ledger")

STATE_DIR = Path(os.environ.get("MLNET_STATE_DIR", "/run/mlnet-testbed"))
BRIDGE_MARK = "mlnet-testbed-run"  # OVS external_ids key naming the run that owns a bridge


@dataclass
class Ledger:
    """Resources of one run; every `add_*` persists the ledger at once."""

    run_id: str
    run_dir: str
    owner: list[int] = field(default_factory=list)  # [pid, start time] of the harness
    bridges: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    processes: list[list[int]] = field(default_factory=list)  # [pid, start time], pid = pgid
    nft_tables: list[list[str]] = field(default_factory=list)  # [family, name]
    # [key, value] of Open_vSwitch other_config the run set where nothing was set
    ovs_options: list[list[str]] = field(default_factory=list)
    # server -> its part (`ServerPart` fields); LOCAL names this machine
    servers: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, run_id: str, run_dir: str) -> Ledger:
        """A new ledger owned by this process."""
        ledger = cls(run_id, run_dir, owner=identity(os.getpid()))
        ledger.save()
        return ledger

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.run_id}.json"

    def save(self) -> None:
        # One writer at a time: a controller restart records its process from a thread.
        with _SAVING:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self), indent=1))
            os.replace(tmp, self.path)

    def add_network(self, bridges: list[str], interfaces: list[str]) -> None:
        """Record the bridges and switch-port interfaces a network is about to create."""
        self.bridges += bridges
        self.interfaces += interfaces
        self.save()

    def add_process(self, pid: int) -> None:
        """Record a process started in its own session (so pid == pgid)."""
        self.processes.append(identity(pid))
        self.save()

    def add_nft_table(self, family: str, name: str) -> None:
        self.nft_tables.append([family, name])
        self.save()

    def set_ovs_option(self, key: str, value: str) -> str:
        """Set Open_vSwitch other_config `key` unless it is already set (then leave it
        as its owner set it); return the value in force. Release removes ours."""
        current = _ovs(["get", "Open_vSwitch", ".", f"other_config:{key}"]).strip().strip('"')
        if current:
            return current
        self.ovs_options.append([key, value])
        self.save()
        _ovs(["set", "Open_vSwitch", ".", f"other_config:{key}={value}"])
        return value

    def add_on_server(self, server: str, **items: list) -> None:
        """Record resources a cluster run is about to make on `server` (LOCAL: here):
        bridges, interfaces, processes ([pid, start time]), pidfiles ([path, marker]),
        dirs (scratch directories)."""
        part = self.servers.setdefault(server, {})
        for key, values in items.items():
            getattr(ServerPart(), key)  # only the known kinds
            part.setdefault(key, []).extend(values)
        self.save()

    def release(self) -> list[str]:
        """Remove everything recorded that still exists; return what was removed."""
        removed = []
        for server, part in self.servers.items():
            removed += release_on(server, ServerPart(**part), self.run_id)
        removed += [
            f"process group {pid}" for pid, start in self.processes if kill_group(pid, start)
        ]
        for family, name in self.nft_tables:
            if shell.run(["nft", "delete", "table", family, name], check=False).returncode == 0:
                removed.append(f"nft table {family} {name}")
        marks = _bridge_marks()
        ours = [b for b in self.bridges if b in marks and marks[b] in (self.run_id, "")]
        removed += [f"bridge {b}" for b in delete_bridges(ours)]
        removed += [f"ovs option {k}" for k, v in self.ovs_options if _unset_ovs_option(k, v)]
        removed += [f"interface {i}" for i in delete_interfaces(self.interfaces)]
        self.path.unlink(missing_ok=True)
        return removed


# Bridges per ovs-vsctl transaction. One transaction for all 320 bridges of a k=16
# fat-tree outlived ovs-vsctl's 60 s timeout on the userspace datapath; chunks keep
# each transaction short, with a timeout that grows with its size.
BRIDGES_PER_TRANSACTION = 32


LOCAL = "localhost"  # Mininet's name for the first server


@dataclass
class ServerPart:
    """What a cluster run made on one server."""

    bridges: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    processes: list[list[int]] = field(default_factory=list)  # [pid, start time]
    pidfiles: list[list[str]] = field(default_factory=list)  # [path, marker]
    dirs: list[str] = field(default_factory=list)  # scratch directories (under /tmp)

    def release(self, run_id: str) -> list[str]:
        """Remove this part here (on the server it describes)."""
        removed = []
        for path, marker in self.pidfiles:
            pid = _pid_in(path, marker)
            if pid and kill_group(pid, _start_time(pid)):
                removed.append(f"process group {pid}")
        removed += [f"process group {p}" for p, start in self.processes if kill_group(p, start)]
        marks = _bridge_marks()
        ours = [b for b in self.bridges if b in marks and marks[b] in (run_id, "")]
        removed += [f"bridge {b}" for b in delete_bridges(ours)]
        removed += [f"interface {i}" for i in delete_interfaces(self.interfaces)]
        for path in self.dirs:
            if path.startswith("/tmp/mlnet-testbed/") and Path(path).exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"directory {path}")
        return removed


def release_on(server: str, part: ServerPart, run_id: str) -> list[str]:
    """`part.release` on `server`: here, or there over ssh; each item named with its
    server. A server that cannot be reached is reported, not skipped silently."""
    if server == LOCAL:
        return part.release(run_id)

    argv = ssh_argv(server, ["sudo", "-n", sys.executable, "-m", "testbed.ledger", run_id])
    payload = json.dumps(asdict(part))
    proc = subprocess.run(argv, input=payload, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        detail = proc.stderr.strip().splitlines()[-1:]
        raise TestbedError(f"could not clean up on {server}: {''.join(detail)}")
    return [f"{server}: {item}" for item in json.loads(proc.stdout or "[]")]


def remote_identities(server: str, pids: list[int]) -> list[list[int]]:
    """[pid, start time] of processes on `server` (one ssh call)."""
    if server == LOCAL:
        return [identity(p) for p in pids]

    script = (
        "import sys; from testbed.ledger import identity; "
        "print([identity(int(p)) for p in sys.argv[1:]])"
    )
    argv = ssh_argv(server, [sys.executable, "-c", script, *map(str, pids)])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise TestbedError(f"could not read process start times on {server}")
    return json.loads(proc.stdout)


def _pid_in(path: str, marker: str) -> int | None:
    """The pid in a pid file, if that process's command line still holds `marker`."""
    try:
        pid = int(Path(path).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    return pid if marker.encode() in cmdline else None


def delete_bridges(bridges: list[str]) -> list[str]:
    """Delete OVS bridges, a chunk per ovs-vsctl transaction; return those asked for."""
    for start in range(0, len(bridges), BRIDGES_PER_TRANSACTION):
        chunk = bridges[start : start + BRIDGES_PER_TRANSACTION]
        args = ["ovs-vsctl", f"--timeout={30 + 2 * len(chunk)}"]
        for bridge in chunk:
            args += ["--", "--if-exists", "del-br", bridge]
        shell.run(args, check=False, timeout=40 + 2 * len(chunk))
    return list(bridges)


def summarize_removed(removed: list[str]) -> str:
    """What a release removed, as one short line: counts by kind, then a few names
    (a k=16 fat-tree has 320 bridges and ~6,000 interfaces)."""
    kinds: dict[str, int] = {}
    for item in removed:
        kind = item.rsplit(" ", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    counts = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items())
    more = "..." if len(removed) > 4 else ""
    return f"{counts} ({', '.join(removed[:4])}{more})"


def delete_interfaces(names: list[str]) -> list[str]:
    """Delete those root-namespace interfaces that exist (one ``ip -batch``).

    Deleting one end of a veth pair deletes its peer too, so later lines of the
    batch may fail harmlessly; what counts is that none is left afterwards.
    """
    present = [n for n in names if Path("/sys/class/net", n).exists()]
    if present:
        shell.run_batch("ip", [["link", "del", n] for n in present], check=False)
        left = [n for n in present if Path("/sys/class/net", n).exists()]
        if left:
            raise TestbedError(f"could not delete interfaces: {', '.join(left[:5])}")
    return present


def identity(pid: int) -> list[int]:
    """[pid, start time in clock ticks]: tells a process from a later one reusing its pid."""
    return [pid, _start_time(pid)]


def alive(ident: list[int]) -> bool:
    """Whether the process `ident` names is still running."""
    pid, start = ident
    return _start_time(pid) == start != -1


def leftovers() -> list[Ledger]:
    """Ledgers of runs whose harness is no longer alive."""
    found = []
    for path in sorted(STATE_DIR.glob("*.json")):
        try:
            ledger = Ledger(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            log.warning("unreadable ledger %s; remove it by hand", path)
            continue
        if not ledger.owner or not alive(ledger.owner):
            found.append(ledger)
    return found


def kill_group(pid: int, start: int) -> bool:
    """SIGTERM the group led by `pid` (if it is still that process), then SIGKILL."""
    if not alive([pid, start]):
        return False
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive([pid, start]):
                return True
            time.sleep(0.05)
    return True


def _start_time(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    fields = stat.rsplit(")", 1)[1].split()  # fields after the parenthesised command name
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return -1
    return int(fields[19])  # field 22 of proc(5): start time


def _bridge_marks() -> dict[str, str]:
    """Every bridge -> the run id in its BRIDGE_MARK external id ("" if unmarked), in
    one ovs-vsctl call (one call per bridge took ~5 s on a k=16 fat-tree)."""
    out = _ovs(["--format=json", "--columns=name,external_ids", "list", "Bridge"])
    if not out:
        return {}
    marks = {}
    for name, ids in json.loads(out)["data"]:
        pairs = dict(ids[1]) if ids[0] == "map" else {}
        marks[name] = pairs.get(BRIDGE_MARK, "")
    return marks


def _unset_ovs_option(key: str, value: str) -> bool:
    """Remove other_config `key` if it still holds the value a run set."""
    current = _ovs(["get", "Open_vSwitch", ".", f"other_config:{key}"]).strip().strip('"')
    if current != value:
        return False
    _ovs(["remove", "Open_vSwitch", ".", "other_config", key])
    return True


def _ovs(args: list[str]) -> str:
    proc = shell.run(["ovs-vsctl", "--timeout=10", *args], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def main() -> None:
    """On a server of a cluster run: release the `ServerPart` on stdin for the run id in
    argv[1]; print what was removed as JSON."""
    part = ServerPart(**json.loads(sys.stdin.read()))
    print(json.dumps(part.release(sys.argv[1])))


if __name__ == "__main__":
    main()
