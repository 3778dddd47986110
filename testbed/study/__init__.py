"""Studies: many runs of one spec (sweeps, repeats), their tables, and APNet's loss-bound
profile. A study directory holds one run directory per run plus study.yaml, runs.csv
and summary.csv (see results/README.md)."""
