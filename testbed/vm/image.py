"""The CI guest's disk image, built once from the Debian archive and cached.

What goes in (the *recipe*; its hash is the cache key, so the image is rebuilt only
when one of these changes):

- a Debian release (minbase; ``testbed/vm/distros.py``: bookworm by default, trixie)
  from the Debian archive, with its cloud kernel and initramfs, and the packages
  ``scripts/bootstrap.sh --print-packages`` names;
- the project's ``.venv``, made *by bootstrap.sh itself* (``--in-image``) inside the
  image's chroot. When the guest's Python is the host venv's, from a wheelhouse built
  here and pinned to the versions in this host's ``.venv`` (``pip freeze`` as
  constraints), so the guest runs the same Python stack as the host and the chroot
  needs no network; for another Python, online from PyPI at the newest releases, as on
  a fresh machine of that release (``distros.py`` says why);
- ``init.sh`` as the guest's PID 1;
- this file, the bootstrap script and the package metadata it stamps.

mmdebstrap runs in ``unshare`` mode: its mounts live in a private mount namespace
and its processes in a private PID namespace, so a build that is killed leaves no
mount or daemon on the host, only a ``.build-*`` directory in the cache, which the
next build removes. The cache holds one image per release; a new one replaces the old
one of its release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import TestbedError
from testbed.vm import distros
from testbed.vm.distros import Distro

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"
CACHE = Path(os.environ.get("MLNET_VM_CACHE", "/var/cache/mlnet-testbed/vm"))
# What the guest needs beyond bootstrap.sh's packages: a kernel that boots under
# QEMU (virtio disk, serial console) with netem and openvswitch as modules, and the
# tools the guest's own scripts call.
GUEST_PACKAGES = (
    "linux-image-cloud-amd64", "initramfs-tools", "kmod", "iputils-ping", "make",
    "openssh-server", "openssh-client", "sudo",  # the servers of `make cluster-test`
)  # fmt: skip
# The editable install builds with setuptools (pyproject.toml) inside pip's build
# isolation, which in the offline chroot can only use the wheelhouse.
BUILD_WHEELS = ("setuptools>=61", "wheel")
TORCH_CPU_INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")
GUEST_CA = "/var/tmp/host-ca.crt"  # only while the chroot's pip runs
GUEST_REPO = "/opt/mlnet-testbed"  # where guest.sh copies the checkout, beside .venv
FREE_SPACE_BYTES = 2 << 30  # room on the root disk for what the tests write
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")  # paths that go into mmdebstrap hooks


class VmError(TestbedError):
    """A VM build or run failed; the message is one line for the user."""


@dataclass(frozen=True)
class Image:
    """A built image in the cache: root disk, kernel and initrd to boot it with."""

    directory: Path

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())


def recipe(python: str, distro: Distro) -> dict:
    """Everything that decides the image's content (the cache key hashes this)."""
    files = ["scripts/bootstrap.sh", "setup.cfg", "pyproject.toml", "testbed/vm/image.py"]
    files += ["testbed/vm/distros.py", "testbed/vm/init.sh"]
    same_python = python_version(python) == distro.python
    return {
        "suite": distro.suite,
        "sources": list(distro.sources),
        "python": distro.python,
        "packages": sorted({*GUEST_PACKAGES, *bootstrap_packages(), *distro.packages}),
        "files": {name: _sha256((REPO / name).read_bytes()) for name in files},
        # pinned to the host venv when the ABI matches; else the newest for the guest's
        "wheels": frozen_requirements(python) if same_python else guest_requirements(distro),
        "pinned": same_python,
        "build_wheels": list(BUILD_WHEELS),
    }


def cache_key(recipe_: dict) -> str:
    """A short, stable hash of a recipe."""
    return _sha256(json.dumps(recipe_, sort_keys=True).encode())[:16]


def bootstrap_packages() -> list[str]:
    """The distro packages bootstrap.sh installs on a machine (its own list)."""
    return _run(["bash", str(BOOTSTRAP), "--print-packages"], "bootstrap.sh").split()


def bootstrap_extras() -> str:
    """The project's extras bootstrap.sh installs, comma-separated (its own list)."""
    return _run(["bash", str(BOOTSTRAP), "--print-extras"], "bootstrap.sh").strip()


def python_version(python: str) -> str:
    """`python`'s major.minor."""
    out = _run([python, "-c", "import sys; print(*sys.version_info[:2], sep='.')"], "python")
    return out.strip()


def guest_requirements(distro: Distro) -> list[str]:
    """What a guest of another Python installs: the project's requirements, with torch
    at bootstrap.sh's version unless the release's own package provides it."""
    reqs = distros.project_requirements(REPO / "setup.cfg", bootstrap_extras())
    reqs = [r for r in reqs if distros.requirement_name(r) != "torch"]
    if not distro.torch_from_distro:
        version = _run(["bash", str(BOOTSTRAP), "--print-torch-version"], "bootstrap.sh")
        reqs.append(f"torch=={version.strip()}")
    return sorted(reqs)


def frozen_requirements(python: str) -> list[str]:
    """The host venv's packages at their exact versions (the project itself excluded)."""
    out = _run([python, "-m", "pip", "freeze", "--local", "--exclude-editable"], "pip freeze")
    return sorted(line for line in out.splitlines() if line and not line.startswith("#"))


def ensure(python: str, distro: Distro, log=print) -> Image:
    """The cached image of `distro` for the current recipe, built first if missing."""
    _check_cache_path()
    CACHE.mkdir(parents=True, exist_ok=True)
    want = recipe(python, distro)
    key = cache_key(want)
    with _locked(CACHE / ".lock"):
        image = Image(CACHE / key)
        if (image.directory / "manifest.json").exists():
            log(f"vm image {key}: cached ({image.manifest['kernel']})")
            return image
        for stale in CACHE.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a build killed earlier; we hold the lock
        log(f"vm image {key}: building ({distro.name}, cloud kernel, the project's venv)")
        build(want, key, python, distro, log)
        for old in stale_images(key, distro.suite):  # one image per release
            shutil.rmtree(old, ignore_errors=True)
        return image


def stale_images(key: str, suite: str) -> list[Path]:
    """Cached images of `suite` other than `key` (and any whose manifest is unreadable)."""
    stale = []
    for other in sorted(p for p in CACHE.iterdir() if p.is_dir() and p.name != key):
        if other.name.startswith(".build-"):
            continue  # a build in progress or killed: the next build of its own removes it
        try:
            other_suite = Image(other).manifest["recipe"]["suite"]
        except (OSError, ValueError, KeyError):
            other_suite = suite
        if other_suite == suite:
            stale.append(other)
    return stale


def build(want: dict, key: str, python: str, distro: Distro, log) -> None:
    """Build the image for `want` into ``CACHE/key`` (atomically: all or nothing)."""
    work = CACHE / f".build-{key}-{os.getpid()}"
    work.mkdir()
    started = time.monotonic()

    def step(name: str, fn, *args):
        t0 = time.monotonic()
        log(f"vm image {key}: {name} ...")
        result = fn(*args)
        log(f"vm image {key}: {name} done in {time.monotonic() - t0:.0f} s")
        return result

    try:
        stage_checkout(work / "project")
        if want["pinned"]:
            step("wheels of the project's dependencies", _wheelhouse, want["wheels"], python, work)
        step("mmdebstrap + bootstrap.sh in the chroot", _debootstrap, want, work)
        kernel = _boot_files(work)
        step("mke2fs", _filesystem, work / "rootfs", work / "rootfs.img")
        for scratch in ("rootfs", "wheelhouse", "project"):
            if (work / scratch).exists():  # an unpinned image has no wheelhouse
                shutil.rmtree(work / scratch)
        manifest = {
            "key": key,
            "kernel": kernel,
            "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_s": round(time.monotonic() - started, 1),
            "recipe": want,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.rename(work, CACHE / key)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.copy(work / "build.log", CACHE / "last-build.log")
        shutil.rmtree(work, ignore_errors=True)
        raise


def clean() -> list[Path]:
    """Remove the image cache; return what was removed."""
    if not CACHE.exists():
        return []
    with _locked(CACHE / ".lock"):
        removed = sorted(CACHE.iterdir())
        shutil.rmtree(CACHE)
    return removed


# --------------------------------------------------------------------------- steps


def _wheelhouse(constraints: list[str], python: str, work: Path) -> None:
    """Wheels of the project's whole dependency tree, built on this host (the same
    Python ABI as the guest's python3), so that the chroot installs offline
    and needs no compiler. `pip wheel` ignores what is installed, so a package this
    host's venv takes from Debian's site-packages is in there too; the host venv's
    exact versions are constraints."""
    out, log = work / "wheelhouse", work / "build.log"
    out.mkdir()
    (out / "constraints.txt").write_text("\n".join(constraints) + "\n")
    pip = [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out)]
    pip += ["--constraint", str(out / "constraints.txt")]
    wanted = [f"{work / 'project'}[{bootstrap_extras()}]", *BUILD_WHEELS]
    try:  # the CPU build of torch: pip's find-links on these machines, else PyTorch's index
        _run([*pip, *wanted], "pip wheel", log_to=log)
    except VmError:
        _run([*pip, "--extra-index-url", TORCH_CPU_INDEX, *wanted], "pip wheel", log_to=log)
    for built in out.glob("mlnet_testbed-*.whl"):
        built.unlink()  # the guest installs the checkout itself, editable


def stage_checkout(dest: Path) -> int:
    """Copy the checkout as it is now (tracked files and untracked ones git does not
    ignore, uncommitted changes included) to `dest`; return the number of files."""
    listing = _run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], "git")
    count = 0
    for name in listing.splitlines():
        src = REPO / name
        if src.is_file():  # ls-files still lists a deleted, uncommitted file
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
            count += 1
    return count


def _debootstrap(want: dict, work: Path) -> None:
    """mmdebstrap the root filesystem, then bootstrap the project inside its chroot:
    offline from the wheelhouse when it is pinned to the host's venv, else online, as
    on a fresh machine of that release (pip trusts the CAs this host trusts)."""
    if want["pinned"]:
        pip_env = "PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/tmp/wheelhouse"
        wheels = [f"sync-in {work}/wheelhouse /var/tmp/wheelhouse"]
    else:
        pip_env = f"PIP_CERT={GUEST_CA}"
        wheels = [f"upload {_ca_bundle()} {GUEST_CA}"]
    chroot_env = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8"
    chroot_env += f" PIP_DISABLE_PIP_VERSION_CHECK=1 {pip_env}"
    hooks = [
        f'mkdir -p "$1/var/tmp/wheelhouse" "$1{GUEST_REPO}"',
        *wheels,
        f"sync-in {work}/project {GUEST_REPO}",
        f"upload {work}/project/testbed/vm/init.sh /sbin/mlnet-vm-init",
        'chmod 0755 "$1/sbin/mlnet-vm-init"',
        f'chroot "$1" {chroot_env} bash {GUEST_REPO}/scripts/bootstrap.sh --in-image',
        # Only the venv stays: the guest copies the checkout in at every boot, so a
        # file deleted from the checkout is not resurrected from the image.
        f'find "$1{GUEST_REPO}" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {{}} +',
        f'rm -rf "$1/var/tmp/wheelhouse" "$1/root/.cache" "$1{GUEST_CA}"',
        'echo mlnet-guest > "$1/etc/hostname"',
        'printf "127.0.0.1 localhost mlnet-guest\\n" > "$1/etc/hosts"',
    ]
    argv = ["mmdebstrap", "--mode=unshare", "--variant=minbase"]
    argv += ["--include=" + ",".join(want["packages"])]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    argv += [want["suite"], str(work / "rootfs"), *want["sources"]]
    _run(argv, "mmdebstrap", log_to=work / "build.log", timeout=1800)


def _ca_bundle() -> str:
    """The CA bundle this host's pip trusts (a proxy's CA may be in it)."""
    for candidate in (os.environ.get("PIP_CERT"), ssl.get_default_verify_paths().cafile):
        if candidate and Path(candidate).is_file() and SAFE_PATH.match(candidate):
            return candidate
    return "/etc/ssl/certs/ca-certificates.crt"


def _boot_files(work: Path) -> str:
    """Copy kernel and initrd beside the disk (QEMU boots them directly, with no
    bootloader); return the kernel's version."""
    boot = work / "rootfs" / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise VmError(f"vm image: expected one kernel in the image's /boot, found {kernels}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copy2(kernels[0], work / "vmlinuz")
    shutil.copy2(boot / f"initrd.img-{version}", work / "initrd.img")
    return version


def _filesystem(tree: Path, image: Path) -> None:
    """An ext4 disk image holding `tree` (mke2fs -d: no loop mount, no root mount)."""
    used = int(_run(["du", "-sb", str(tree)], "du").split()[0])
    size_mb = (used * 5 // 4 + FREE_SPACE_BYTES) >> 20
    _run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "mlnet-root", "-d", str(tree), str(image),
         f"{size_mb}M"],
        "mke2fs",
    )  # fmt: skip


# --------------------------------------------------------------------------- helpers


def _run(argv: list[str], what: str, log_to: Path | None = None, timeout: float = 900) -> str:
    """Run a build step; its failure becomes one line (the full output goes to `log_to`).

    The step runs in a session of its own, and on a timeout or interruption the whole
    session is killed: mmdebstrap's apt, dpkg and pip run in a PID namespace of their
    own and would otherwise outlive it.
    """
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except FileNotFoundError:
        raise VmError(f"{argv[0]} is missing: `sudo make vm-test` installs it") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise VmError(f"vm image: {what} took longer than {timeout:.0f} s") from None
        raise
    if log_to is not None:
        with open(log_to, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{stdout}{stderr}\n")
    if proc.returncode:
        lines = [ln for ln in (stderr or stdout).splitlines() if ln.strip()]
        # the first error names the cause; later ones are its consequences
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR", "error"))][:1]
        detail = (errors or lines[-1:] or [f"exit {proc.returncode}"])[0].strip()
        where = f" (log: {CACHE / 'last-build.log'})" if log_to is not None else ""
        raise VmError(f"vm image: {what} failed: {detail}{where}")
    return stdout


def _check_cache_path() -> None:
    if not SAFE_PATH.match(str(CACHE)) or not CACHE.is_absolute():
        raise VmError(
            f"MLNET_VM_CACHE = '{CACHE}': expected an absolute path of letters, digits "
            "and ._+-/ (it is passed to mmdebstrap hooks)"
        )


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock, so two concurrent vm-tests never build into the same cache."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
