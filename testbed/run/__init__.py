"""One run, phase by phase; `testbed.runner.run_experiment` calls them in this order.

  prepare  preflight, run directory, resolved spec, first metadata  (prepare.py)
  build    controller process + Mininet network, checked end to end  (build.py)
  start    the network, then jobs, traffic, faults, CPU sampling     (start.py)
  observe  jobs and traffic at their offsets, faults when due         (observe.py)
  finish   stop everything, teardown, tables, verdict, metadata       (finish.py)

SIGINT and SIGTERM end any phase in the same teardown (signals.py).
"""
