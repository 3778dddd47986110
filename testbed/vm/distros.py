"""The Debian releases a guest image can be built from, and what differs between them.

A guest whose Python is the host venv's gets the host venv's exact versions (wheels
built here, installed offline). A guest of another Python cannot: numpy, pandas and
torch wheels are per-ABI, a version pinned for 3.11 may have no 3.13 wheel, and pip
resolves environment markers (``python_version >= "3.13"``) for the interpreter it
runs on, so a wheelhouse cannot be made here for another one. Such a guest's image is
bootstrapped online by its own pip, as a fresh machine of that release would be; what
it ended up with is in its facts (``versions``).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import TestbedError

DEFAULT = "bookworm"


@dataclass(frozen=True)
class Distro:
    """One Debian release as a guest: its archive suite, version and python3."""

    suite: str
    version: str
    python: str  # the release's /usr/bin/python3, major.minor
    packages: tuple[str, ...] = ()  # what this release's guest needs beyond bootstrap's

    @property
    def sources(self) -> tuple[str, ...]:
        return (
            f"deb http://deb.debian.org/debian {self.suite} main",
            f"deb http://deb.debian.org/debian {self.suite}-updates main",
            f"deb http://deb.debian.org/debian-security {self.suite}-security main",
        )

    @property
    def name(self) -> str:
        return f"Debian {self.version} ({self.suite})"

    @property
    def torch_from_distro(self) -> bool:
        return "python3-torch" in self.packages


DISTROS = {
    "bookworm": Distro("bookworm", "12", "3.11"),
    # torch for 3.13: the CPU wheel these machines hold is cp311, PyTorch's CPU index
    # is unreachable from them, and PyPI's Linux build is the CUDA one (2.6 GB with its
    # libraries, and it does not import without them). Debian 13 ships its own CPU
    # build with gloo (python3-torch 2.6), which is what bootstrap.sh takes on a
    # Debian 13 machine in the same position.
    "trixie": Distro("trixie", "13", "3.13", ("python3-torch",)),
}


class UnknownDistro(TestbedError):
    """A DISTRO that is not in DISTROS."""


def get(name: str) -> Distro:
    """The distro called `name` (a Debian suite), or a one-line error naming the choices."""
    try:
        return DISTROS[name]
    except KeyError:
        known = ", ".join(sorted(DISTROS))
        raise UnknownDistro(f"DISTRO = '{name}': expected one of {known}") from None


def project_requirements(setup_cfg: Path, extras: str) -> list[str]:
    """The project's requirements with `extras` (comma-separated), read from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in extras.split(","):
        lines += cfg["options.extras_require"][extra].splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def requirement_name(requirement: str) -> str:
    """The distribution name a requirement line starts with, normalised (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[-_.]+", "-", name.group(0)).lower() if name else ""
