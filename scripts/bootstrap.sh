#!/usr/bin/env bash
# Install whatever this machine is missing to run mlnet-testbed; idempotent and
# quiet when nothing is missing. Used by `make run` and `make test`.
#
#   distro packages  -> apt-get (Debian 12 / Ubuntu 22.04+ package names)
#   Open vSwitch     -> started with ovs-ctl when its daemons are not up (no systemd here)
#   .venv            -> /usr/bin/python3 --system-site-packages (Mininet's module is a distro package)
#   torch            -> CPU build (a bare `torch` requirement pulls a multi-GB CUDA build)
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
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PACKAGES="mininet openvswitch-switch iproute2 nftables ethtool iperf3 fping procps python3-venv python3-pip"
VM_PACKAGES="qemu-system-x86 mmdebstrap e2fsprogs openssh-client"
EXTRAS="run,test,docs"

mode="${1:-}"
case "$mode" in
  "") ;;
  --vm) PACKAGES="$PACKAGES $VM_PACKAGES" ;;
  --in-image) ;;
  --print-packages) echo "$PACKAGES"; exit 0 ;;
  --print-extras) echo "$EXTRAS"; exit 0 ;;
  *) echo "bootstrap: unknown option '$mode' (expected --vm, --in-image, --print-packages or --print-extras)" >&2; exit 2 ;;
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

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

# Re-run pip only when the dependency declaration changed since the last bootstrap.
want="$(cat setup.cfg pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
stamp=.venv/.bootstrap-stamp
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x .venv/bin/testbed ]; then
  pip="quiet_pip .venv/bin/python -m pip"
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    say "installing torch $TORCH_VERSION (CPU build)"
    # A CPU wheel in pip's configured find-links (as on these VMs) needs no network;
    # otherwise take the CPU build from PyTorch's index, dependencies from PyPI.
    $pip install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
      || $pip install -q "torch==$TORCH_VERSION" --extra-index-url "$TORCH_CPU_INDEX"
    $pip install -q "torch==$TORCH_VERSION"
  fi
  say "installing mlnet-testbed into .venv (editable)"
  $pip install -q -e ".[$EXTRAS]"
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
