"""helixbench: reading helix-bench HDF5 traces (schema: results/README.md).

Python API (pandas):
  helixbench.load(paths)          one row per run, rank and phase of the /decode runs
  helixbench.load_runs(paths)     one row per run
  helixbench.load_samples(paths)  one row per run, iteration, rank and phase (every sample)
  helixbench.load_table(paths, "micro/kernels")   a column table (/micro, /model, /disagg)

Command-line entry points (installed by scripts/setup.sh into .venv/bin, or run with
`PYTHONPATH=. python3 -m helixbench.<name>` from the repository root):
  helix-report   plots and a Markdown summary of one trace
  helix-compare  regression gate between a baseline and a candidate trace
  helix-sweep    resumable grid of decode runs merged into one trace
  helix-export   traces as one CSV or Parquet table
"""

__version__ = "0.1.0"
__all__ = ["load", "load_runs", "load_samples", "load_table"]


def __getattr__(name):
    # pandas is imported on first use only: the command-line tools that do not need it start
    # faster.
    if name in __all__:
        from . import frame
        return getattr(frame, name)
    raise AttributeError(f"module 'helixbench' has no attribute {name!r}")
