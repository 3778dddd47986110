"""One job in a fresh guest: the checkout goes in on a work disk, results come back.

The work disk is an ext4 image made with ``mke2fs -d`` from a staging folder (no
loop mount, nothing mounted on the host)::

    src/      the checkout as it is now, uncommitted changes included
    command   the shell line guest.sh runs in the checkout
    out/      written by the guest: facts.json, exit_code, whatever the job writes

After power-off, ``debugfs rdump`` copies ``out/`` back into the host's results
folder, also when the guest was stopped early (partial results are kept). The
staging folder, the work disk and QEMU's overlay all live in one temporary folder
that is removed however the run ends.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.results.read import read_json
from testbed.vm import qemu
from testbed.vm.image import Image, VmError, stage_checkout

WORK_DISK_MB = 8192  # sparse: only what the guest writes takes space
SCRATCH_ROOT = "/var/tmp"  # on disk, not tmpfs: QEMU's overlay can grow to GBs


@dataclass
class GuestRun:
    """What came back from one boot."""

    out_dir: Path
    accel: str
    qemu_exit: int | None = None
    job_exit: int | None = None  # None: the job never reported (crash, timeout)
    seconds: float = 0.0
    error: str = ""
    facts: dict = field(default_factory=dict)


def run(
    image: Image,
    command: str,
    out_dir: Path,
    accel: str,
    timeout_s: float,
    memory_mb: int,
    cpus: int,
    cpu_model: str = "",
    echo: Callable[[str], None] = print,
    files: dict[str, bytes] | None = None,
    qemu_extra: tuple[str, ...] = (),
    stop: threading.Event | None = None,
) -> GuestRun:
    """Boot `image`, run `command` in the checkout inside it, copy ``out/`` to `out_dir`.
    `files` go onto the work disk beside ``command`` (relative paths); `qemu_extra`
    are more QEMU arguments (a NIC, for a cluster guest)."""
    result = GuestRun(out_dir, accel)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlnet-vm-", dir=SCRATCH_ROOT) as tmp:
        scratch = Path(tmp)
        disk = scratch / "work.img"
        _work_disk(scratch / "stage", command, disk, files or {})
        argv = [*qemu.boot_argv(image, disk, accel, memory_mb, cpus, cpu_model), *qemu_extra]
        try:
            result.qemu_exit = qemu.boot(
                argv, out_dir / "console.log", timeout_s, echo, scratch, stop
            )
        except VmError as exc:
            result.error = str(exc)
        finally:  # the guest's results, also after a timeout or Ctrl-C
            _copy_out(disk, scratch / "back", out_dir)
    result.seconds = round(time.monotonic() - started, 1)
    result.job_exit = _read_int(out_dir / "exit_code")
    result.facts = read_json(out_dir / "facts.json")
    if result.job_exit is None and not result.error:
        result.error = f"vm: the guest never reported the job's exit (see {out_dir}/console.log)"
    return result


def _work_disk(stage: Path, command: str, disk: Path, files: dict[str, bytes]) -> None:
    stage_checkout(stage / "src")
    (stage / "out").mkdir(parents=True)
    (stage / "command").write_text(command + "\n")
    for name, data in files.items():
        path = stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600)  # a test-only ssh key among them
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "mlnet-work", "-d", str(stage), str(disk),
          f"{WORK_DISK_MB}M"])  # fmt: skip


def _copy_out(disk: Path, back: Path, out_dir: Path) -> None:
    """Copy the work disk's ``out/`` into `out_dir` (debugfs reads ext4 without mounting).
    Symlinks stay links: pytest's ``*current`` links point into the guest's tree."""
    back.mkdir()
    _run(["debugfs", "-R", f"rdump /out {back}", str(disk)])
    if (back / "out").is_dir():
        try:
            shutil.copytree(back / "out", out_dir, symlinks=True, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:
            raise VmError(f"vm: could not copy the guest's results to {out_dir}: {exc}") from None


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise VmError(f"{argv[0]} is missing: `sudo make vm-test` installs it") from None
    if proc.returncode:
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise VmError(f"vm: {argv[0]} failed: {detail}")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
