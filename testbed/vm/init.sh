#!/bin/sh
# PID 1 of the mlnet-testbed CI guest, baked into the image by testbed/vm/image.py.
# The initramfs has mounted the root disk, /proc, /sys, /dev and /run; mount the
# rest, run the job on the work disk (/dev/vdb, made fresh by the host for every
# boot), then power off. Everything else lives on the work disk, so changing what
# the guest does needs no new image.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
LANG=C.UTF-8
export PATH HOME LANG

mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/shm /run/lock /mnt/work
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname mlnet-guest
ip link set lo up
modprobe -q virtio_rng || true   # entropy for Python and OVS without waiting

if mount /dev/vdb /mnt/work; then
  sh /mnt/work/src/testbed/vm/guest.sh
  sync
  umount /mnt/work
else
  echo "mlnet-vm-init: cannot mount the work disk /dev/vdb"
fi
echo o > /proc/sysrq-trigger   # power off; QEMU runs with -no-reboot and exits
sleep 60
