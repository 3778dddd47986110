"""Topo -> running Mininet network: build, shape links, check reachability, tear down."""
