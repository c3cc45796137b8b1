"""Benchmarks: run each as ``python -m benchmarks.<name>``.

They print tables with ratios measured in one run; they never assert timings.
"""
