"""Statistics for comparing two sets of iteration samples: the one-sided Mann-Whitney U-test
(scipy.stats.mannwhitneyu) and a bootstrap band of the relative change of medians."""
from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu


def mann_whitney_greater(x, y) -> float:
    """One-sided p-value of the hypothesis that samples `y` tend to be larger than samples `x`
    (candidate slower than baseline); scipy's 'auto' method (exact for small samples without
    ties, normal approximation with tie correction otherwise). NaN when a set is empty."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    return float(mannwhitneyu(y, x, alternative="greater").pvalue)


def mann_whitney_less(x, y) -> float:
    """One-sided p-value that `y` tends to be smaller than `x` (candidate faster)."""
    return mann_whitney_greater(y, x)


def bootstrap_rel_change(x, y, resamples: int = 2000, level: float = 0.95,
                         seed: int = 12345) -> tuple:
    """Band of median(y) / median(x) - 1 from resampling both sets with replacement: returns
    (low, high) at the given level. Deterministic (fixed seed)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mx = np.median(x[rng.integers(0, len(x), (resamples, len(x)))], axis=1)
    my = np.median(y[rng.integers(0, len(y), (resamples, len(y)))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = my / mx - 1.0
    rel = rel[np.isfinite(rel)]
    if len(rel) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(rel, [tail, 100.0 - tail])
    return float(lo), float(hi)


def rel_iqr(x) -> float:
    """Interquartile range over the median: the relative spread of one set of samples."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return float("nan")
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else float("nan")
