#!/usr/bin/env python3
"""HELIX_TEST_SLOW_PHASE on the GPU: the same decode run plain and with one phase slowed by a
fraction; the slowed phase grows by that fraction (within the delay kernel's floor and the
noise), the others stay. Usage: check_slow_phase.py HELIX_BENCH OUTDIR."""
import os
import subprocess
import sys

import h5py
import numpy as np

PHASE, FRACTION = "ffn", 0.10


def run(bench, out, slow):
    env = dict(os.environ)
    env.pop("HELIX_TEST_SLOW_PHASE", None)
    if slow:
        env["HELIX_TEST_SLOW_PHASE"] = f"{PHASE}:{FRACTION}"
    subprocess.run([bench, "decode", "--backend", "cuda", "--model", "llama-3.1-8b", "--layouts",
                    "tp", "--seq", "4K", "--batch", "1", "--iters", "30", "--warmup", "3",
                    "--no-verify", "--quiet", "--out", out], check=True, env=env)
    with h5py.File(out) as f:
        g = f["decode/run_0000"]
        names = list(g["phase_us"].attrs["phases"])
        med = np.median(g["phase_us"][()][:, 0, :], axis=0)
        return dict(zip(names, med)), g.attrs["test_slow_phase"]


def main():
    bench, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    plain, tag0 = run(bench, os.path.join(outdir, "plain.h5"), False)
    slow, tag1 = run(bench, os.path.join(outdir, "slow.h5"), True)
    problems = []
    ratio = slow[PHASE] / plain[PHASE]
    print(f"{PHASE}: {plain[PHASE]:.1f} -> {slow[PHASE]:.1f} us (x{ratio:.3f}, asked "
          f"x{1 + FRACTION:.2f})")
    if not 1 + 0.6 * FRACTION <= ratio <= 1 + 1.6 * FRACTION:
        problems.append(f"{PHASE} grew x{ratio:.3f}, not about x{1 + FRACTION:.2f}")
    for p in ("qkv", "attention", "o_proj"):
        if abs(slow[p] / plain[p] - 1) > 0.05:
            problems.append(f"{p} changed by {(slow[p] / plain[p] - 1) * 100:+.1f}%")
    if tag0 != "" or tag1 != f"{PHASE}:{FRACTION}":
        problems.append(f"test_slow_phase attributes '{tag0}', '{tag1}'")
    for p in problems:
        print(f"check_slow_phase: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
