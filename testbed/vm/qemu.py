"""Boot the CI guest under QEMU: KVM where it really works, TCG otherwise.

The guest has no network device at all (``-nic none``): every packet a test sends
stays inside the guest's own namespaces. Its serial console is the only channel
out while it runs; `boot` streams it to a log file and to the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from testbed.vm.image import Image, VmError

QEMU = "qemu-system-x86_64"
TCG_CPU = "max,-avx2"  # every feature TCG emulates but AVX2 (see machine_args)
# tsc=reliable: under TCG the kernel finds the vCPUs' TSCs "unsynchronized" and falls
# back to the HPET, and every clock read (HTB and TCP read it per packet) becomes an
# emulated MMIO access. Both vCPUs' TSCs come from QEMU's one virtual clock, so they
# are in step. (KVM guests use kvm-clock either way.)
KERNEL_ARGS = (
    "root=/dev/vda rw console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable init=/sbin/mlnet-vm-init"
)
KVM_PROBE_S = 60  # a KVM boot reaches its first panic in ~2 s; a broken KVM hangs
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r")


def probe_accel(image: Image) -> tuple[str, str]:
    """("kvm" or "tcg", why). KVM only if a real boot under it gets going: /dev/kvm can
    exist on a CPU without vmx/svm, and nested virtualization can half work (seen here:
    ``-cpu host`` dies on an MSR assertion, ``-cpu qemu64`` hangs)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    if not {"vmx", "svm"} & _cpu_flags():
        return "tcg", "/dev/kvm exists, but the CPU exposes no vmx or svm"
    # No disk and no initrd: the kernel panics at once, and panic=-1 -no-reboot exits.
    argv = [QEMU, *machine_args("kvm", 512, 1), "-kernel", str(image.kernel)]
    argv += ["-append", "console=ttyS0 panic=-1"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=KVM_PROBE_S)
    except subprocess.TimeoutExpired:
        return "tcg", f"a KVM test boot hung for {KVM_PROBE_S} s"
    if "Kernel panic" not in proc.stdout:
        detail = (proc.stderr.strip().splitlines() or ["no kernel output"])[-1]
        return "tcg", f"a KVM test boot failed: {detail}"
    return "kvm", "a KVM test boot worked"


def machine_args(accel: str, memory_mb: int, cpus: int, cpu_model: str = "") -> list[str]:
    """The machine: CPUs, memory, serial console on stdio, no NIC, no display.
    `cpu_model` defaults to `host` under KVM and `TCG_CPU` under TCG; TCG runs one
    host thread per vCPU."""
    if accel == "kvm":
        cpu = ["-accel", "kvm", "-cpu", cpu_model or "host"]
    else:
        # Without AVX2: QEMU 7.2's TCG emulates it imperfectly. Debian 13's numpy 2.2.4
        # segfaulted in np.argsort's AVX2 kernel in such a guest, every time, and ran
        # with AVX2 masked (by NPY_DISABLE_CPU_FEATURES, or from the CPU as here).
        cpu = ["-accel", "tcg,thread=multi", "-cpu", cpu_model or TCG_CPU]
    return [
        *cpu,
        *("-smp", str(cpus), "-m", str(memory_mb)),
        *("-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"),
        *("-serial", "stdio", "-nic", "none", "-device", "virtio-rng-pci"),
    ]


def boot_argv(
    image: Image, work_disk: Path, accel: str, memory_mb: int, cpus: int, cpu_model: str = ""
) -> list[str]:
    """QEMU's command line: the image's root disk copy-on-write (``snapshot=on``: the
    cached image never changes), the work disk read-write."""
    return [
        QEMU,
        *machine_args(accel, memory_mb, cpus, cpu_model),
        *("-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_ARGS),
        "-drive", f"file={image.rootfs},if=virtio,format=raw,snapshot=on",
        "-drive", f"file={work_disk},if=virtio,format=raw",
    ]  # fmt: skip


def boot(
    argv: list[str],
    console_log: Path,
    timeout_s: float,
    echo: Callable[[str], None],
    scratch: Path,
    stop: threading.Event | None = None,
) -> int:
    """Run QEMU to power-off; stream the console. Returns QEMU's exit code.

    `scratch` is QEMU's TMPDIR (its copy-on-write overlay of the root disk lives there)
    and is the caller's to delete. On timeout, interruption or `stop` (set by another
    thread: a signal reaches only the main one) QEMU is killed, never left.
    """
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # the terminal's Ctrl-C reaches us; we stop QEMU
    )
    reader = threading.Thread(target=_stream, args=(proc, console_log, echo), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if stop is not None and stop.is_set():
                raise VmError(f"vm: the guest was stopped (console: {console_log})")
            if time.monotonic() > deadline:
                raise VmError(
                    f"vm: the guest did not power off within {timeout_s:.0f} s; stopped it "
                    f"(console: {console_log})"
                )
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    return proc.returncode


def _stream(proc: subprocess.Popen, console_log: Path, echo: Callable[[str], None]) -> None:
    with open(console_log, "w") as log:
        for raw in iter(proc.stdout.readline, b""):
            line = ANSI.sub("", raw.decode(errors="replace")).rstrip()
            log.write(line + "\n")
            log.flush()
            if line:
                echo(line)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
