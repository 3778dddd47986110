"""Two guests joined by one private Ethernet segment: the servers of `make cluster-test`.

QEMU's socket network backend carries the segment as one TCP connection on the
host's loopback (guest a listens on 127.0.0.1:PORT, guest b connects), so no host
bridge or tap exists and no test packet leaves the two guests. Each guest gets:

    cluster/role       a or b
    cluster/mac        the guest's MAC address on the segment
    cluster/hosts      both guests' names and addresses, for /etc/hosts
    cluster/id_ed25519[.pub]
                       an ssh key pair made for this boot only; both guests accept it
                       for root, so either can ssh to the other as MininetCluster needs

`testbed/vm/cluster.sh` (run by guest.sh when ``cluster/`` exists) configures the NIC,
the names and sshd. Guest b only serves: it runs until guest a's job touches
``/tmp/mlnet-cluster-done`` on it (or its timeout), and then reports what it has left
(bridges, namespaces, processes) in its ``out/leftovers.txt``.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from testbed.vm import guest
from testbed.vm.image import Image, VmError

SUBNET = "10.231.0"  # the private segment; no host interface has it
GUESTS = {"a": (f"{SUBNET}.1", "52:54:00:6d:6c:01"), "b": (f"{SUBNET}.2", "52:54:00:6d:6c:02")}
NAMES = {"a": "mlnet-a", "b": "mlnet-b"}
DONE_FLAG = "/tmp/mlnet-cluster-done"
B_GRACE_S = 180  # after a is done: b's leftovers report and power-off (slow under TCG)
B_COMMAND = (
    f"while [ ! -e {DONE_FLAG} ]; do sleep 1; done; "
    "sh testbed/vm/leftovers.sh > /mnt/work/out/leftovers.txt"
)


def run_pair(
    image: Image,
    command: str,
    out_dir: Path,
    accel: str,
    timeout_s: float,
    memory_mb: int,
    cpus: int,
    echo: Callable[[str], None] = print,
) -> dict[str, guest.GuestRun]:
    """Boot guests a and b on one segment; run `command` on a, then stop b.
    Returns each guest's `GuestRun` (out/ of each in `out_dir`/a and `out_dir`/b)."""
    files = _shared_files()
    port = _free_loopback_port()
    a_command = f"{command}; status=$?; ssh mlnet-b touch {DONE_FLAG}; exit $status"
    commands = {"a": a_command, "b": B_COMMAND}
    backends = {"a": f"listen=127.0.0.1:{port}", "b": f"connect=127.0.0.1:{port}"}
    results: dict[str, guest.GuestRun] = {}
    stop = threading.Event()  # set on interruption: each thread then kills its QEMU

    # Each thread's own end mark: Python 3.11's Thread.join, interrupted by Ctrl-C,
    # can mark a live thread as stopped (bpo-45274), and the process would then exit
    # with its QEMU running (seen: guest a's QEMU outlived an interrupted cluster-test).
    done = {role: threading.Event() for role in "ab"}

    def boot(role: str) -> None:
        try:
            _boot(role)
        finally:
            done[role].set()

    def _boot(role: str) -> None:
        _, mac = GUESTS[role]
        nic = ("-netdev", f"socket,id=c0,{backends[role]}",
               "-device", f"virtio-net-pci,netdev=c0,mac={mac}")  # fmt: skip
        (out_dir / role).mkdir(parents=True, exist_ok=True)
        results[role] = guest.run(
            image, commands[role], out_dir / role, accel,
            timeout_s=timeout_s, memory_mb=memory_mb, cpus=cpus,
            echo=lambda line: echo(f"{role} | {line}"),
            files={**files, "cluster/role": role.encode(), "cluster/mac": mac.encode()},
            qemu_extra=nic, stop=stop,
        )  # fmt: skip

    threads = {role: threading.Thread(target=boot, args=(role,), daemon=True) for role in "ab"}
    try:
        threads["a"].start()
        _wait_listening(port, done["a"])
        threads["b"].start()
        done["a"].wait()
        done["b"].wait(timeout=B_GRACE_S)  # a told b to finish; b reports and powers off
    finally:  # Ctrl-C or SIGTERM land here, in the main thread: stop both guests
        stop.set()
        for role, thread in threads.items():
            if thread.ident is not None:  # started: wait until its QEMU is gone
                done[role].wait()
    return results


def _shared_files() -> dict[str, bytes]:
    """The hosts file and a fresh ssh key pair (ssh-keygen runs in a temporary folder
    that is removed at once; the private key lives on only on the work disks)."""
    hosts = "".join(f"{GUESTS[r][0]} {NAMES[r]}\n" for r in "ab")
    with tempfile.TemporaryDirectory(prefix="mlnet-keys-") as tmp:
        key = Path(tmp) / "id_ed25519"
        try:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlnet-cluster-test",
                 "-f", str(key)], check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            raise VmError(
                f"vm: ssh-keygen failed ({exc}); `sudo make cluster-test` installs it"
            ) from None
        return {
            "cluster/hosts": hosts.encode(),
            "cluster/id_ed25519": key.read_bytes(),
            "cluster/id_ed25519.pub": key.with_suffix(".pub").read_bytes(),
        }


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, a_done: threading.Event, timeout_s: float = 60) -> None:
    """Guest b's QEMU must connect after guest a's listens (else b exits at once).
    Read from /proc/net/tcp: a probing connection would be taken for guest b."""
    deadline = time.monotonic() + timeout_s
    wanted = f"0100007F:{port:04X}"  # 127.0.0.1 in /proc/net/tcp's byte order
    while time.monotonic() < deadline and not a_done.is_set():
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        if any(row[1] == wanted and row[3] == "0A" for row in rows):  # 0A: LISTEN
            return
        time.sleep(0.2)
    raise VmError(f"vm: guest a's QEMU never listened on 127.0.0.1:{port}")
