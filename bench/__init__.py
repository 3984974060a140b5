"""Benchmarks that print figures, each with its goal: ``python -m bench`` (``make bench``)."""
