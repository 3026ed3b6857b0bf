"""Casemesh benchmarks: numbers and ratios against the raw ceiling, measured in
the same run. Not tests: nothing here asserts a time."""
