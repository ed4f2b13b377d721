#!/usr/bin/env python3
"""Checks the accounting of a decode trace across ranks (results/README.md): one row per rank of
the layout; waits and transfers non-negative, adding up to their communication phase (attn_comm, which
also holds the packs of the exchanged rows, and HOP-B's phases: at most); the critical step's parts adding up to the step; the critical rank one of
the layout's; for MoE layers the routed load of every rank (real runs: every token's top-k
counted once per TPF column split). Usage: check_accounting.py TRACE N ACCOUNTING, ACCOUNTING
min_duration_rule (real runs) or simulated (--emulate-rank all)."""
import sys

import h5py
import numpy as np


def main():
    path, n, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    problems = []
    with h5py.File(path, "r") as f:
        moe = f["decode"].attrs["layer_kind"] == "moe"
        for name, g in sorted(f["decode"].items()):
            a = g.attrs
            if a["status"] != "ok":
                problems.append(f"{name}: {a['status']}: {a['message']}")
                continue
            if a["accounting"] != how:
                problems.append(f"{name}: accounting {a['accounting']}, expected {how}")
            ph, wait, xfer = g["phase_us"][()], g["wait_us"][()], g["transfer_us"][()]
            if ph.shape[1] != n or list(g["rank_of_row"][()]) != list(range(n)):
                problems.append(f"{name}: {ph.shape[1]} rows, expected the {n} ranks")
            measured = g["rank_measured_as"][()]
            if np.any(measured > np.arange(n)) or np.any(measured < 0):
                problems.append(f"{name}: rank_measured_as {measured}")
            rank_step, step = g["rank_step_us"][()], g["step_us"][()]
            if not np.allclose(step, rank_step.max(axis=1)):
                problems.append(f"{name}: step is not the longest rank's")
            comm = g["phase_us"].attrs["phase_is_comm"].astype(bool)
            if np.any(wait < -1e-6) or np.any(xfer < -1e-6):
                problems.append(f"{name}: negative wait or transfer")
            both = wait + xfer
            names = [p.decode() if isinstance(p, bytes) else str(p)
                     for p in g["phase_us"].attrs["phases"]]
            packed = np.array([a["layout"] == "helix-hopb" or p == "attn_comm" for p in names])
            ok = (np.all(both[:, :, comm] <= ph[:, :, comm] + 1e-3) and
                  np.allclose(both[:, :, comm & ~packed], ph[:, :, comm & ~packed], rtol=1e-9,
                              atol=1e-3))
            if not ok:
                problems.append(f"{name}: wait + transfer do not make their phases")
            bd = g["step_breakdown_us"][()]
            if not np.allclose(bd.sum(axis=1), step, rtol=1e-6, atol=1e-3):
                problems.append(f"{name}: the breakdown does not add up to the step")
            crit = g["critical_rank"][()]
            if np.any(crit < 0) or np.any(crit >= n):
                problems.append(f"{name}: critical rank out of range")
            if moe:
                rows = g["routed_rows"][()] if "routed_rows" in g else np.array([-1.0])
                want = a["batch"] * 2 * a["tpf"]  # the test models route top-2
                if np.any(rows < 0) or (how == "min_duration_rule" and rows.sum() != want):
                    problems.append(f"{name}: routed rows {rows}, expected {want} in all")
            print(f"{name}: {a['layout']:<10} B={a['batch']} step {np.median(step):.1f} us, "
                  f"critical rank {np.bincount(crit).argmax()}, ranks run "
                  f"{len(set(measured.tolist()))} of {n}")
    for p in problems:
        print(f"check_accounting: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
