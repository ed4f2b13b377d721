"""helixbench: reading helix-bench HDF5 traces (schema: results/README.md).

Command-line entry points (installed by scripts/setup.sh, or run with
`PYTHONPATH=. python3 -m helixbench.<name>` from the repository root):
  helix-report   plots and a Markdown summary of one trace
  helix-compare  regression gate between a baseline and a candidate trace
  helix-sweep    resumable grid of decode runs merged into one trace
"""

__version__ = "0.1.0"
