"""Benchmarks (``make bench``); each prints ratios against a baseline."""
