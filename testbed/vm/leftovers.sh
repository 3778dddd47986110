#!/bin/sh
# What a cluster-test guest still holds after the run (empty output: nothing):
# OVS bridges, network namespaces of Mininet hosts, mnexec or training processes, and
# interfaces (not the kernel's own gre0/gretap0/erspan0, made when ip_gre loads).
ovs-vsctl --timeout=10 list-br 2>/dev/null | sed 's/^/bridge /'
root=$(readlink /proc/1/ns/net)
for p in /proc/[0-9]*; do
  ns=$(readlink "$p/ns/net" 2>/dev/null)
  cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
  # No link or no command line: the process has exited, is a zombie (which holds no
  # namespace) or is a kernel thread.
  [ -z "$ns" ] || [ -z "$cmd" ] || [ "$ns" = "$root" ] || echo "netns of pid ${p#/proc/}: $cmd"
done
# The segment's NIC is the one with the MAC address pair.py gave this guest.
mac=$(cat /mnt/work/cluster/mac 2>/dev/null)
ip -o link show | grep -v "link/ether ${mac:-none} " |
  awk -F': ' '$2 !~ /^(lo|ovs-system|gre0|gretap0|erspan0)(@|$)/ {print "link " $2}'
# A cluster run's scratch directories (testbed.jobs.remote), on any server.
ls -A /tmp/mlnet-testbed 2>/dev/null | sed 's/^/scratch /'
