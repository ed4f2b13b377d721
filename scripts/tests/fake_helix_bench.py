#!/usr/bin/env python3
"""Stands in for `helix-bench decode` in the sweep tests: parses the options the sweep passes,
sleeps FAKE_SLEEP_S seconds, and writes a one-run synthetic trace the way the binary does
(temporary name, then rename). FAKE_FAIL_LAYOUT=<layout> makes that layout exit 2 without a
trace, like bad input."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    ap.add_argument("--model")
    ap.add_argument("--layouts")
    ap.add_argument("--seq", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--out")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--backend", default="cpu")
    a = ap.parse_args()
    layouts = a.layouts.split(",")
    if os.environ.get("FAKE_FAIL_LAYOUT") in layouts:
        print(f"helix-bench: error: --layouts: {a.layouts} refused by the test", file=sys.stderr)
        return 2
    time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0")))
    ranks = int(os.environ.get("FAKE_NP", "1"))
    tmp = f"{a.out}.tmp.{os.getpid()}"
    synth.write_decode(tmp, runs=[{"layout": x, "seq_len": a.seq, "batch": a.batch}
                                  for x in layouts],
                       iters=a.iters, ranks=max(ranks, 2), model=a.model, seed=a.seq + a.batch)
    os.replace(tmp, a.out)
    print(f"fake decode {a.layouts} S={a.seq} B={a.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
