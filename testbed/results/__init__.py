"""Run directory, tidy CSVs, metadata and the end-of-run summary."""
