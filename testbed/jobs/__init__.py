"""Placing jobs on hosts and running their processes."""
