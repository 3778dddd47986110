"""What this machine offers: privileges, Open vSwitch, kernel features, versions.

Probes have no lasting side effects: kernel features are tried inside a throwaway
network namespace (``unshare -n``) that disappears with the probing process.
"""

from __future__ import annotations

import functools
import os
import platform as _platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# Memory ovs-vswitchd pins per AF_XDP port (testbed.network.plane): its umem of 16,384
# 4 KiB frames is fixed when OVS is compiled; 62 ports took 4.7 GB here. And the share
# of the machine's available memory auto lets a run's ports pin: the rest is for torch.
AFXDP_PORT_BYTES = 75 * 2**20
AFXDP_MEMORY_SHARE = 0.5

NETEM_PROBE = ["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
NFT_PROBE = """table netdev mlnet_probe {
  chain egress_probe { type filter hook egress device lo priority 0; }
}
"""


@dataclass(frozen=True)
class Platform:
    """A snapshot of the machine's capabilities (see `probe`)."""

    root: bool
    ovs_running: bool
    ovs_kernel_module: bool
    netem: bool | None  # None: unknown (needs root to try)
    netem_seed: bool | None  # the installed tc/kernel accept netem's `seed`
    nftables_egress: bool | None
    tcp_congestion_controls: tuple[str, ...]
    versions: dict[str, str] = field(default_factory=dict)
    tun: bool | None = True  # /dev/net/tun (userspace datapath); None: unknown, not root
    ovs_port_types: tuple[str, ...] = ()  # Open_vSwitch iface_types
    mem_available_bytes: int = 0

    def datapath(self, requested: str) -> str:
        """The OVS datapath a run will use for `network.datapath: requested`."""
        if requested == "auto":
            return "kernel" if self.ovs_kernel_module else "user"
        return requested

    def ports(self, requested: str, datapath: str, n_ports: int) -> tuple[str, str]:
        """(forwarding plane, why) for `network.ports: requested` on `datapath` with
        `n_ports` switch ports (see `testbed.network.plane`)."""
        if datapath == "kernel":
            return "kernel", "the kernel datapath (its ports are kernel vports)"
        if requested != "auto":
            return requested, "requested by the spec"
        if "afxdp" not in self.ovs_port_types:
            return "packet", "auto: this Open vSwitch offers no afxdp ports"
        need = n_ports * AFXDP_PORT_BYTES
        if need > self.mem_available_bytes * AFXDP_MEMORY_SHARE:
            return "packet", (
                f"auto: {n_ports} AF_XDP ports would pin {need / 2**30:.1f} GiB, more than "
                f"{AFXDP_MEMORY_SHARE:.0%} of the {self.mem_available_bytes / 2**30:.1f} GiB "
                "available"
            )
        return "afxdp", f"auto: AF_XDP ports ({need / 2**30:.1f} GiB pinned)"

    def loss_backend(self, requested: str) -> tuple[str, str]:
        """(backend, why) for `network.loss_backend: requested`."""
        if requested != "auto":
            return requested, "requested by the spec"
        if self.netem:
            return "netem", "auto: sch_netem qdiscs can be created here"
        return "nftables", "auto: sch_netem is not available here"

    def as_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def probe() -> Platform:
    """Probe the machine once per process."""
    root = os.geteuid() == 0
    return Platform(
        root=root,
        ovs_running=_ok(["ovs-vsctl", "--timeout=3", "show"]),
        ovs_kernel_module=_ovs_module(root),
        netem=_ok(NETEM_PROBE) if root else None,
        netem_seed=_ok([*NETEM_PROBE, "loss", "1%", "seed", "1"]) if root else None,
        nftables_egress=_ok(["unshare", "-n", "nft", "-f", "-"], NFT_PROBE) if root else None,
        tcp_congestion_controls=tcp_congestion_controls(),
        versions=versions(),
        tun=_tun(root),
        ovs_port_types=ovs_port_types(),
        mem_available_bytes=mem_available_bytes(),
    )


def ovs_port_types() -> tuple[str, ...]:
    """Interface types the running Open vSwitch offers (empty if it is not running)."""
    out = _first_line(["ovs-vsctl", "--timeout=3", "get", "Open_vSwitch", ".", "iface_types"])
    return tuple(t.strip() for t in out.strip("[]").split(",") if t.strip())


def mem_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable of the machine, in bytes (0 if unreadable)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# tcp_*.ko modules in net/ipv4 that are not congestion controls (seen on Debian 12's
# stock kernel: tcp_diag, the socket-monitoring module, is one).
NOT_CONGESTION_CONTROLS = {"diag"}


def tcp_congestion_controls(modules: Path = Path("/lib/modules")) -> tuple[str, ...]:
    """Algorithms the kernel offers now, plus those it could load as modules (the
    kernel loads algorithm X as module tcp_X on first use)."""
    names = set(_read("/proc/sys/net/ipv4/tcp_available_congestion_control").split())
    moddir = modules / _platform.release() / "kernel/net/ipv4"
    if moddir.is_dir():
        for mod in moddir.glob("tcp_*.ko*"):
            names.add(mod.name.split(".")[0][len("tcp_") :])
    return tuple(sorted(names - NOT_CONGESTION_CONTROLS))


def versions() -> dict[str, str]:
    """Versions of everything a run's results depend on."""
    ovs = _first_line(["ovs-vsctl", "--version"]).split()
    out = {
        "python": _platform.python_version(),
        "kernel": _platform.release(),
        "ovs": ovs[-1] if ovs else "missing",
    }
    for dist in ("torch", "os-ken", "numpy", "pydantic", "scikit-learn", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    try:
        from mininet.net import VERSION

        out["mininet"] = VERSION
    except ImportError:
        out["mininet"] = "missing"
    return out


def _ovs_module(root: bool) -> bool:
    if Path("/sys/module/openvswitch").exists():
        return True
    if root:  # Ubuntu's ovs-ctl loads it at start; try the same, quietly
        _ok(["modprobe", "-q", "openvswitch"])
    return Path("/sys/module/openvswitch").exists()


def _tun(root: bool) -> bool | None:
    """Whether /dev/net/tun exists. systemd creates it at boot from modules.devname, and
    opening it loads the module; without systemd (a container, the CI guest) it may be
    missing until the module is loaded, which root tries, as ovs-ctl does for openvswitch."""
    tun = Path("/dev/net/tun")
    if not tun.exists() and root:
        _ok(["modprobe", "-q", "tun"])
    return True if tun.exists() else (False if root else None)


def _ok(argv: list[str], stdin: str | None = None) -> bool:
    try:
        return (
            subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.splitlines()[0] if out else ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
