"""mlnet-testbed: how the network shapes distributed training, measured on Mininet."""

__version__ = "0.1.0"
