#!/bin/sh
# Runs inside the CI guest, started by its PID 1 (testbed/vm/init.sh) from the work
# disk that the host prepared (testbed/vm/guest.py):
#
#   /mnt/work/src/      the host's checkout
#   /mnt/work/command   one shell line to run in the checkout (e.g. `make vm-tier ...`)
#   /mnt/work/out/      everything that goes back to the host
#
# The image holds the project's .venv (built by bootstrap.sh --in-image) under
# /opt/mlnet-testbed; the checkout is copied beside it, so the editable install
# imports this checkout's code.
WORK=/mnt/work
OUT=$WORK/out
REPO=/opt/mlnet-testbed

# The serial console is a tty: without this, rich redraws progress bars on it.
export TERM=dumb COLUMNS=120
mkdir -p "$OUT"
cp -a "$WORK/src/." "$REPO/"
cd "$REPO" || exit 1
echo "mlnet-guest: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
.venv/bin/python -m testbed.vm facts > "$OUT/facts.json" || echo "mlnet-guest: facts failed"
# A bootstrapped machine, as on any host: the image has every package and the venv,
# so this only starts Open vSwitch (and loads its kernel module).
bash scripts/bootstrap.sh || echo "mlnet-guest: bootstrap failed"
# A cluster-test guest (testbed/vm/pair.py): its NIC, names and sshd first.
[ -d "$WORK/cluster" ] && sh testbed/vm/cluster.sh
sh -c "$(cat "$WORK/command")"
status=$?
echo "$status" > "$OUT/exit_code"
echo "mlnet-guest: job exited $status"
