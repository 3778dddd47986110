"""The `Network` protocol holds for both network classes."""

import inspect

from testbed.network.cluster_net import ClusterNetwork
from testbed.network.emulated import EmulatedNetwork
from testbed.network.protocol import Network


def test_both_networks_implement_the_network_protocol():
    """Jobs, monitors and counters use only `Network`'s members: each network class
    defines every one of them (a missing one would be an AttributeError mid-run)."""
    members = [m for m in dir(Network) if not m.startswith("_")]
    annotated = list(Network.__annotations__)
    for cls in (EmulatedNetwork, ClusterNetwork):
        missing = [m for m in members if not hasattr(cls, m)]
        assert not missing, f"{cls.__name__} lacks {missing}"
        source = inspect.getsource(cls)
        unset = [a for a in annotated if f"self.{a}" not in source and not hasattr(cls, a)]
        assert not unset, f"{cls.__name__} never sets {unset}"
