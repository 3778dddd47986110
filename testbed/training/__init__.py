"""Training processes: datasets, models, the worker/server loops and sync schemes."""
