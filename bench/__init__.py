"""Benchmarks: each runs nattillsyn and a named reference on the same input in one run."""
