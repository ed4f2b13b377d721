"""Statistics for comparing two sets of iteration samples: the one-sided Mann-Whitney U-test
(scipy when installed, otherwise the implementation below) and a bootstrap band of the relative
change of medians."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

try:  # scipy is pinned in requirements.txt; the fallback keeps the tools usable without
    from scipy.stats import mannwhitneyu as _scipy_mwu
except ImportError:  # pragma: no cover - exercised by the tests through use_scipy=False
    _scipy_mwu = None


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_v = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple:
    """Number of arrangements giving each U = 0 .. n1*n2 (no ties), by the usual recursion
    c(n1, n2, u) = c(n1 - 1, n2, u - n2) + c(n1, n2 - 1, u)."""
    if n1 == 0 or n2 == 0:
        return (1,)
    a = _u_counts(n1 - 1, n2)
    b = _u_counts(n1, n2 - 1)
    out = [0] * (n1 * n2 + 1)
    for u, c in enumerate(a):
        out[u + n2] += c
    for u, c in enumerate(b):
        out[u] += c
    return tuple(out)


def mann_whitney_greater(x, y, use_scipy: bool = True) -> float:
    """One-sided p-value of the hypothesis that samples `y` tend to be larger than samples `x`
    (candidate slower than baseline). Exact for small samples without ties; normal approximation
    with tie and continuity corrections otherwise."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n1, n2 = len(y), len(x)
    if n1 == 0 or n2 == 0:
        return float("nan")
    if use_scipy and _scipy_mwu is not None:
        return float(_scipy_mwu(y, x, alternative="greater").pvalue)
    both = np.concatenate([y, x])
    ranks = _midranks(both)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)  # U statistic of y
    ties = len(np.unique(both)) < len(both)
    if not ties and n1 <= 12 and n2 <= 12:  # scipy's 'auto' rule uses exact below 8; close enough
        counts = _u_counts(n1, n2)
        total = math.comb(n1 + n2, n1)
        k = int(round(u))
        return float(sum(counts[k:]) / total)
    n = n1 + n2
    _, tie_counts = np.unique(both, return_counts=True)
    tie_term = float(((tie_counts ** 3) - tie_counts).sum()) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma
    return float(0.5 * math.erfc(z / math.sqrt(2.0)))


def mann_whitney_less(x, y, use_scipy: bool = True) -> float:
    """One-sided p-value that `y` tends to be smaller than `x` (candidate faster)."""
    return mann_whitney_greater(y, x, use_scipy)


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
