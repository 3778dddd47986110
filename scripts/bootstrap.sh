#!/usr/bin/env bash
# Install whatever this machine is missing to run mlnet-testbed; idempotent and
# quiet when nothing is missing. Used by `make run` and `make test`.
#
#   distro packages  -> apt-get (Debian 12 and 13 / Ubuntu 22.04+ package names)
#   Open vSwitch     -> started with ovs-ctl when its daemons are not up (no systemd here)
#   .venv            -> $PYTHON3 (default /usr/bin/python3) --system-site-packages
#                       (Mininet's module is a distro package, built for that Python)
#   torch            -> a build for the venv's Python, from the first source that has one:
#                       a CPU wheel in pip's find-links, PyTorch's CPU index, the distro's
#                       own CPU package (python3-torch, if new enough: Debian 13, Ubuntu
#                       24.04), then PyPI (its Linux build is the CUDA one: GBs). It says
#                       which it took and how big that is, or what to do when none fits.
#   the project      -> editable install with its run, test and docs extras
#   /usr/local/bin/testbed -> a link to .venv/bin/testbed, so `sudo testbed ...` works
#                    as `sudo mn` does (sudo's secure_path has /usr/local/bin); made only
#                    where nothing else stands there
#
#   --vm             also install what `make vm-test` needs on this host (QEMU, mmdebstrap)
#   --in-image       run inside the CI guest image's chroot while it is built
#                    (testbed/vm/image.py): packages come with the image and no daemon
#                    may start, since a chroot shares the build host's kernel
#   --print-packages print the distro packages a machine needs, one line, and exit
#   --print-extras   print the project's extras it installs (for the guest image's wheels)
#   --print-torch-version  print the torch version it asks wheel sources for
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON3="${PYTHON3:-/usr/bin/python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TORCH_MIN="2.1"  # the run extra's floor in setup.cfg: older distro packages are passed over
PACKAGES="mininet openvswitch-switch iproute2 nftables ethtool iperf3 fping procps python3-venv python3-pip"
VM_PACKAGES="qemu-system-x86 mmdebstrap e2fsprogs openssh-client"
EXTRAS="run,test,docs"  # run first: pip gets the others by name, run's requirements but torch

mode="${1:-}"
case "$mode" in
  "") ;;
  --vm) PACKAGES="$PACKAGES $VM_PACKAGES" ;;
  --in-image) ;;
  --print-packages) echo "$PACKAGES"; exit 0 ;;
  --print-extras) echo "$EXTRAS"; exit 0 ;;
  --print-torch-version) echo "$TORCH_VERSION"; exit 0 ;;
  *) echo "bootstrap: unknown option '$mode' (expected --vm, --in-image, --print-packages, --print-extras or --print-torch-version)" >&2; exit 2 ;;
esac

say() { echo "bootstrap: $*"; }
# pip warns about every unreachable extra index this VM configures; keep real errors only.
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: needs root to install packages and start Open vSwitch (use sudo make ...)" >&2
  exit 1
fi

missing=""
for pkg in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  say "installing distro packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ "$mode" != "--in-image" ] && ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
  say "starting Open vSwitch daemons"
  # ovs-ctl warns about ulimit in containers/VMs without CAP_SYS_RESOURCE; harmless.
  /usr/share/openvswitch/scripts/ovs-ctl start >/dev/null 2>&1 || true
  ovs-vsctl --timeout=10 show >/dev/null || { echo "bootstrap: Open vSwitch failed to start" >&2; exit 1; }
fi

site_mb() { du -sm "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" | cut -f1; }

# torch for the venv's Python (see the header for the order). Each wheel source is
# asked for exactly one thing, so an unreachable CPU index can never let PyPI's CUDA
# build in unannounced.
install_torch() {
  local py=.venv/bin/python pyver before cand
  pyver="$($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  before="$(site_mb)"
  if $pip install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    $pip install -q "torch==$TORCH_VERSION"  # its dependencies
    say "torch $TORCH_VERSION for Python $pyver: the CPU wheel in pip's find-links ($(( $(site_mb) - before )) MB installed)"
    return
  fi
  if PIP_CONFIG_FILE=/dev/null $pip install -q --no-deps --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" 2>/dev/null; then
    $pip install -q "torch==$TORCH_VERSION"
    say "torch $TORCH_VERSION for Python $pyver: PyTorch's CPU index $TORCH_CPU_INDEX ($(( $(site_mb) - before )) MB installed)"
    return
  fi
  cand="$(distro_torch_candidate)"
  if [ -n "$cand" ] && [ "$mode" != "--in-image" ]; then
    say "torch for Python $pyver: no CPU wheel $TORCH_VERSION reachable; installing the distro's CPU build python3-torch $cand ($(apt_size python3-torch))"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch >/dev/null
    $py -c "import torch" && return
    echo "bootstrap: the distro's python3-torch $cand does not import in .venv" >&2; exit 1
  fi
  say "torch $TORCH_VERSION for Python $pyver: no CPU build reachable; taking PyPI's, the CUDA build (several GB with its libraries)"
  if ! $pip install -q "torch==$TORCH_VERSION"; then
    echo "bootstrap: no torch $TORCH_VERSION for Python $pyver in pip's find-links, at $TORCH_CPU_INDEX, in the distro (python3-torch >= $TORCH_MIN) or on PyPI; put a CPU wheel for Python $pyver in pip's find-links, or set TORCH_CPU_INDEX or TORCH_VERSION" >&2
    exit 1
  fi
  say "torch $TORCH_VERSION from PyPI: $(( $(site_mb) - before )) MB installed"
}

# The distro's python3-torch version if it is at least TORCH_MIN (it is built for the
# distro's python3, which is the venv's), else nothing.
distro_torch_candidate() {
  local cand
  cand="$(apt-cache policy python3-torch 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [ -z "$cand" ] && [ "$mode" != "--in-image" ]; then
    apt-get update -qq >/dev/null 2>&1 || true  # a machine that never fetched the lists
    cand="$(apt-cache policy python3-torch 2>/dev/null | awk '/Candidate:/ {print $2}')"
  fi
  if [ -n "$cand" ] && [ "$cand" != "(none)" ] && dpkg --compare-versions "$cand" ge "$TORCH_MIN"; then
    echo "$cand"
  fi
}

# The run extra's requirements but torch, which install_torch placed. Asking pip for
# `.[run]` would make it re-resolve torch's declared dependencies, and a distro's torch
# declares pins it does not ship with (Debian 13's says sympy==1.13.1 beside its 1.13.3),
# which an offline install (the guest image) cannot fetch.
run_requirements() {
  .venv/bin/python - <<'PY'
import configparser, re
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
for line in cfg["options.extras_require"]["run"].splitlines():
    line = line.strip()
    if line and not line.startswith("#") and re.split(r"[^A-Za-z0-9_.-]", line)[0].lower() != "torch":
        print(line)
PY
}

apt_size() {  # "N MB to download, M MB installed" with its dependencies not counted
  apt-cache show --no-all-versions "$1" 2>/dev/null \
    | awk '/^Size:/ {d=$2} /^Installed-Size:/ {i=$2} END {printf "%d MB download, %d MB installed", d/1048576, i/1024}'
}

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON3" -m venv --system-site-packages .venv
fi

# Re-run pip only when the dependency declaration changed since the last bootstrap.
want="$(cat setup.cfg pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
stamp=.venv/.bootstrap-stamp
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x .venv/bin/testbed ]; then
  pip="quiet_pip .venv/bin/python -m pip"
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    install_torch
  fi
  say "installing mlnet-testbed into .venv (editable)"
  mapfile -t run_reqs < <(run_requirements)
  $pip install -q -e ".[${EXTRAS//run,/}]" "${run_reqs[@]}"
  echo "$want" > "$stamp"
fi

# Root's PATH: link our entry point where sudo finds it, unless something else is there
# (another clone's link that still works, or a file we did not make).
link=/usr/local/bin/testbed
ours="$PWD/.venv/bin/testbed"
if [ "$(readlink "$link" 2>/dev/null)" != "$ours" ]; then
  if [ ! -e "$link" ] || { [ -L "$link" ] && [ ! -e "$(readlink "$link")" ]; } \
     || { [ -L "$link" ] && [ "$(basename "$(readlink "$link")")" = testbed ] \
          && [ "$(basename "$(dirname "$(dirname "$(readlink "$link")")")")" = .venv ]; }; then
    ln -sfn "$ours" "$link"
    say "linked $link -> $ours (sudo testbed ... now runs this clone)"
  else
    say "left $link alone (not a link to a .venv of ours); run $ours instead"
  fi
fi
