#!/bin/sh
# Runs inside a cluster-test guest (testbed/vm/pair.py), from guest.sh, before the job:
# the NIC on the private segment, both guests' names, and sshd with the test-only key.
# Everything it writes is on the guest's copy-on-write root disk and ends with it.
C=/mnt/work/cluster
role=$(cat "$C/role")
name=mlnet-$role
addr=$(awk -v n="$name" '$2 == n {print $1}' "$C/hosts")
mac=$(cat "$C/mac")
modprobe virtio_net   # no udev in the guest: nothing loads it for us
# The NIC is the one with our MAC address (found by address, not by name).
for _ in 1 2 3 4 5 6 7 8 9 10; do
  nic=$(ip -o link show | awk -v m="$mac" '$0 ~ m {sub(":", "", $2); print $2}')
  [ -n "$nic" ] && break
  sleep 1
done
if [ -z "$nic" ]; then
  echo "mlnet-guest: no interface with MAC $mac:"; ip -o link show; ls /sys/bus/pci/devices
fi
hostname "$name"
cat "$C/hosts" >> /etc/hosts
ip addr add "$addr/24" dev "$nic"
ip link set "$nic" up
install -d -m 700 /root/.ssh
install -m 600 "$C/id_ed25519" /root/.ssh/id_ed25519
install -m 644 "$C/id_ed25519.pub" /root/.ssh/id_ed25519.pub
install -m 600 "$C/id_ed25519.pub" /root/.ssh/authorized_keys
# Both guests are ours and their host keys are made at boot: nothing to pin.
cat > /root/.ssh/config <<CONF
Host mlnet-a mlnet-b 10.231.0.*
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CONF
ssh-keygen -A >/dev/null
install -d -m 755 /run/sshd
# UseDNS no: MininetCluster's advice; a guest has no resolver to wait for.
/usr/sbin/sshd -o UseDNS=no -o PermitRootLogin=prohibit-password
echo "mlnet-guest: $name at $addr, sshd $(pgrep -x sshd >/dev/null && echo running || echo FAILED)"
