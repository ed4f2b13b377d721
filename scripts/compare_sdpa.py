#!/usr/bin/env python3
"""Side-by-side: helix-micro's decode attention against stock PyTorch SDPA on the same shapes.

  compare_sdpa.py HELIX_MICRO.h5 SDPA.json [--one-kv-bar 2.5] [--other-bar 1.0]

HELIX_MICRO.h5 is a helix-micro trace (/micro/kernels), SDPA.json the output of sdpa_peer.py.

Matching: an SDPA row (batch, q_heads, kv_heads, head_dim, tokens) matches every helix-micro row
named attn_gqa/<source>/B<batch>_q<q_heads>_kv<kv_heads>_d<head_dim>/T<tokens>, whatever
<source> is (a model, or "custom" for --gqa-shapes). Names carry the sizes actually run, so a run
scaled down by --max-kv-bytes matches nothing at full length. When several rows match (the same
shape under two sources), the fastest is compared.

Bars: on one-KV-head shapes at batch 1 (the per-GPU shards of TP and Helix), ours must be at least
--one-kv-bar (2.5) times faster than SDPA; on every other shape never slower (--other-bar 1.0).
The table gives both times, the speedup (SDPA time / ours), our bandwidth's fraction of the
stream ceiling measured in the same helix-micro run, the bar and pass/miss.

Exit codes: 0 every bar met; 1 a bar missed (each miss printed with the shortfall), or an SDPA
shape helix-micro did not measure (unless --allow-missing); 2 bad input.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # helixbench/
from helixbench.safeio import (MALFORMED, BadInput, ToolParser, check_input,  # noqa: E402
                               check_output, guarded, write_text)

NAME_RE = re.compile(
    r"^attn_gqa/(?P<source>[^/]+)/B(?P<b>\d+)_q(?P<q>\d+)_kv(?P<kv>\d+)_d(?P<d>\d+)/T(?P<t>\d+)$")


class InputError(Exception):
    pass


def shape_key(batch, q_heads, kv_heads, head_dim, tokens):
    return (int(batch), int(q_heads), int(kv_heads), int(head_dim), int(tokens))


def key_name(key):
    b, q, kv, d, t = key
    return f"B{b}_q{q}_kv{kv}_d{d}/T{t}"


def micro_key(name):
    """The shape key of a helix-micro kernel name, or None when it is not a GQA attention row."""
    m = NAME_RE.match(name)
    if not m:
        return None
    return shape_key(m["b"], m["q"], m["kv"], m["d"], m["t"])


def load_micro(path):
    """Rows {name, time_us_median, gbps, fraction_of_ceiling, verified} and the ceiling."""
    try:
        import h5py
    except ImportError as e:
        raise InputError(f"h5py is needed to read {path}: {e}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"cannot open {path}: {e}")
    with f:
        if "micro/kernels/name" not in f:
            raise InputError(f"{path}: no /micro/kernels table (not a helix-micro trace)")
        k = f["micro/kernels"]
        names = [n.decode() if isinstance(n, bytes) else n for n in k["name"].asstr()[()]]
        cols = {c: list(k[c][()]) for c in ("time_us_median", "gbps", "fraction_of_ceiling")}
        verified = list(k["verified"][()]) if "verified" in k else [-1] * len(names)
        ceiling = float(f["micro"].attrs.get("ceiling_gbps", 0.0))
    rows = []
    for i, n in enumerate(names):
        rows.append({"name": n, "time_us_median": float(cols["time_us_median"][i]),
                     "gbps": float(cols["gbps"][i]),
                     "fraction_of_ceiling": float(cols["fraction_of_ceiling"][i]),
                     "verified": int(verified[i])})
    return rows, ceiling


def load_sdpa(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise InputError(f"cannot open {path}: {e.strerror}")
    except ValueError as e:
        raise InputError(f"{path}: not JSON ({e})")
    rows = doc.get("rows") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: no rows (expected sdpa_peer.py output)")
    need = ("batch", "q_heads", "kv_heads", "head_dim", "tokens", "time_us_median")
    for r in rows:
        missing = [k for k in need if k not in r]
        if missing:
            raise InputError(f"{path}: a row lacks {', '.join(missing)}")
    return rows


def bar_for(key, one_kv_bar, other_bar):
    b, _, kv, _, _ = key
    return one_kv_bar if (b == 1 and kv == 1) else other_bar


def compare(micro_rows, sdpa_rows, one_kv_bar=2.5, other_bar=1.0):
    """One result per SDPA row: key, ours (fastest matching helix-micro row) or None, speedup,
    bar, ok (None when unmatched), shortfall (fraction below the bar, 0 when met)."""
    by_key = {}
    for r in micro_rows:
        k = micro_key(r["name"])
        if k is not None:
            by_key.setdefault(k, []).append(r)
    out = []
    for s in sdpa_rows:
        k = shape_key(s["batch"], s["q_heads"], s["kv_heads"], s["head_dim"], s["tokens"])
        bar = bar_for(k, one_kv_bar, other_bar)
        cands = by_key.get(k, [])
        res = {"key": k, "shape": key_name(k), "sdpa_us": float(s["time_us_median"]),
               "sdpa_gbps": float(s.get("gbps", 0.0)), "bar": bar, "ours": None,
               "speedup": None, "ok": None, "shortfall": None}
        if cands:
            best = min(cands, key=lambda r: r["time_us_median"])
            res["ours"] = best
            sp = res["sdpa_us"] / best["time_us_median"] if best["time_us_median"] > 0 else 0.0
            res["speedup"] = sp
            res["ok"] = sp >= bar
            res["shortfall"] = 0.0 if res["ok"] else 1.0 - sp / bar
        out.append(res)
    return out


def format_table(results, ceiling):
    lines = [f"{'shape':<28} {'ours us':>10} {'sdpa us':>10} {'speedup':>8} {'ours GB/s':>10} "
             f"{'of ceiling':>10} {'bar':>6}  result"]
    for r in results:
        if r["ours"] is None:
            lines.append(f"{r['shape']:<28} {'-':>10} {r['sdpa_us']:10.1f} {'-':>8} {'-':>10} "
                         f"{'-':>10} {r['bar']:5.2g}x  not measured by helix-micro")
            continue
        o = r["ours"]
        res = "pass" if r["ok"] else f"MISS (short by {100 * r['shortfall']:.1f}%)"
        if o.get("verified") == 0:
            res += ", failed verification"
        lines.append(f"{r['shape']:<28} {o['time_us_median']:10.1f} {r['sdpa_us']:10.1f} "
                     f"{r['speedup']:7.2f}x {o['gbps']:10.1f} {o['fraction_of_ceiling']:10.3f} "
                     f"{r['bar']:5.2g}x  {res}")
    lines.append(f"(ceiling: read-only stream {ceiling:.1f} GB/s in the helix-micro run; speedup = "
                 f"sdpa time / ours)")
    return "\n".join(lines)


def verdict(results, allow_missing=False):
    """(exit code, messages): 1 when a bar is missed or a shape unmatched (unless allowed)."""
    msgs = []
    for r in results:
        if r["ours"] is None:
            if not allow_missing:
                msgs.append(f"MISSING {r['shape']}: helix-micro has no attn_gqa row of this shape "
                            "(run it with --gqa-shapes, see scripts/gpu_micro.sh)")
        elif not r["ok"]:
            msgs.append(f"MISS {r['shape']}: {r['speedup']:.2f}x SDPA, bar {r['bar']:.2g}x: short "
                        f"by {100 * r['shortfall']:.1f}% (ours {r['ours']['time_us_median']:.1f} "
                        f"us, would need <= {r['sdpa_us'] / r['bar']:.1f} us)")
    if all(r["ours"] is None for r in results):
        msgs.append("no SDPA shape matched any helix-micro row")
    return (1 if msgs else 0), msgs


def main(argv=None):
    ap = ToolParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("micro", help="helix-micro HDF5 trace")
    ap.add_argument("sdpa", help="sdpa_peer.py JSON")
    ap.add_argument("--one-kv-bar", type=float, default=2.5,
                    help="least speedup on one-KV-head shapes at batch 1")
    ap.add_argument("--other-bar", type=float, default=1.0, help="least speedup elsewhere")
    ap.add_argument("--allow-missing", action="store_true",
                    help="SDPA shapes helix-micro did not measure are listed, not failures")
    ap.add_argument("--json", help="also write the comparison to this JSON file")
    a = ap.parse_args(argv)
    if not (0 < a.one_kv_bar < 1e6 and 0 < a.other_bar < 1e6):
        print("compare_sdpa: error: bars must be positive", file=sys.stderr)
        return 2
    try:
        check_input(a.micro, "MICRO")
        check_input(a.sdpa, "SDPA")
        if a.json:
            check_output(a.json, "--json", [("MICRO", a.micro), ("SDPA", a.sdpa)])
        micro, ceiling = load_micro(a.micro)
        sdpa = load_sdpa(a.sdpa)
    except (InputError, BadInput) as e:
        print(f"compare_sdpa: error: {e}", file=sys.stderr)
        return 2
    results = compare(micro, sdpa, a.one_kv_bar, a.other_bar)
    print(format_table(results, ceiling))
    code, msgs = verdict(results, a.allow_missing)
    for m in msgs:
        print(m)
    print("compare_sdpa: every bar met" if code == 0 else "compare_sdpa: bar missed")
    if a.json:
        rows = [{"shape": r["shape"], "sdpa_us": r["sdpa_us"],
                 "ours_us": r["ours"]["time_us_median"] if r["ours"] else None,
                 "ours_name": r["ours"]["name"] if r["ours"] else None,
                 "speedup": r["speedup"], "bar": r["bar"], "ok": r["ok"],
                 "fraction_of_ceiling": r["ours"]["fraction_of_ceiling"] if r["ours"] else None}
                for r in results]
        write_text(a.json, json.dumps({"ceiling_gbps": ceiling, "rows": rows, "exit": code},
                                      indent=1))
    return code


if __name__ == "__main__":
    sys.exit(guarded("compare_sdpa", main, bad=MALFORMED))
