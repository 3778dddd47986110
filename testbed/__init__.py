"""mlnet-testbed: how the network shapes distributed training, measured on Mininet."""

import logging as _logging

__version__ = "0.1.0"

# Importing mininet.log makes every logger created after it a MininetLogger, with a
# stderr handler of its own at Mininet's level (25): our modules' debug lines would
# never reach logs/harness.log and their warnings would print on the user's terminal.
# Let Mininet create its own logger first, then put the standard class back for ours.
try:
    import mininet.log  # noqa: F401
except ImportError:  # the VM tooling runs without Mininet
    pass
_logging.setLoggerClass(_logging.Logger)
