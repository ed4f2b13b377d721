"""Shared by the sections of helix-report: layout order and colors, number formats, Markdown
tables and figure saving."""
from __future__ import annotations

import math
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LAYOUT_ORDER = {"tp": 0, "kvp": 1, "helix": 2, "helix-hopb": 3}
LAYOUT_COLORS = {"tp": "tab:blue", "kvp": "tab:orange", "helix": "tab:green",
                 "helix-hopb": "tab:red"}
MAX_PANELS = 16


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def fmt_tokens(n) -> str:
    n = int(n)
    if n >= 1048576 and n % 1048576 == 0:
        return f"{n // 1048576}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


def layout_color(layout: str, i: int = 0) -> str:
    return LAYOUT_COLORS.get(layout, f"C{4 + i % 6}")


def fmt_us(x) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.1f}"


def md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def panel_grid(count, width, height, extra=0.8):
    """A figure of `count` panels, at most four per row, each width x height inches."""
    ncols = min(4, count)
    nrows = math.ceil(count / ncols)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + extra),
                        squeeze=False)


def save(fig, out_dir, name, figures):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    figures.append(name)
    return name
