"""ember's benchmark suite: ``python -m benchmarks`` (``--help`` lists the options).

It measures ember against NumPy, torch eager, torch.compile, Numba and JAX (each when
installed) in one process and writes a table, a JSON file and a plot. Speed is reported
as ratios measured in one run; tests only check that the suite runs.

- ``harness.py``: warm-up, repeats, median and IQR, agreement check, roofline, ratios
- ``workloads/``: one module per workload family
- ``report.py``, ``plot.py``: the Markdown tables and JSON, the PNG
- ``peers.py``: which peers are installed, versions, threads, the machine
"""
