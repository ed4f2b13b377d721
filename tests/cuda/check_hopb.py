#!/usr/bin/env python3
"""Checks a decode trace with helix and helix-hopb runs over a link slow enough that the
All-to-All matters: every chunk timeline is consistent and each HOP-B chunk's exchange overlaps
the next chunk's attention (helixbench.hopb check --expect-overlap), and at every (S, B) the
best HOP-B chunk count exposes less of the All-to-All than Helix. Usage: check_hopb.py TRACE."""
import sys

import numpy as np

from helixbench import hopb
from helixbench.trace import load_decode_runs, open_trace


def main():
    path = sys.argv[1]
    code = hopb.main(["check", path, "--expect-overlap"])
    with open_trace(path) as f:
        runs = [r for r in load_decode_runs(f) if r.ok]
    problems = []
    for key in sorted({(r.get("seq_len"), r.get("batch")) for r in runs}):
        at = [r for r in runs if (r.get("seq_len"), r.get("batch")) == key]
        helix = [np.median(hopb.exposed_a2a_us(r)) for r in at if r.get("layout") == "helix"]
        best = [np.median(hopb.exposed_a2a_us(r)) for r in at
                if r.get("layout") == "helix-hopb" and int(r.get("hopb_chunks")) > 1]
        if not helix or not best:
            problems.append(f"S={key[0]} B={key[1]}: helix or a chunked helix-hopb run missing")
        elif min(best) >= helix[0]:
            problems.append(f"S={key[0]} B={key[1]}: HOP-B exposes {min(best):.1f} us of the "
                            f"All-to-All, Helix {helix[0]:.1f} us")
        else:
            print(f"S={key[0]} B={key[1]}: exposed All-to-All helix {helix[0]:.1f} us, best "
                  f"HOP-B {min(best):.1f} us")
    for p in problems:
        print(f"check_hopb: {p}", file=sys.stderr)
    return 1 if problems or code else 0


if __name__ == "__main__":
    sys.exit(main())
