"""Faults on purpose (spec `faults:`): links, switches, job processes and the
controller broken at given times, and what each cost, in faults.csv.

`paths` says which host pairs a fault can disrupt, `probe` measures when they get
through again (fping), `runner` fires the faults and writes the table.
"""
