"""Benchmarks run by `make bench`: speed as ratios against baselines run in the same script."""
