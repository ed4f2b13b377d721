#!/usr/bin/env python3
"""Stock PyTorch decode attention on the GQA shapes of helix-micro, for a side-by-side comparison.

Runs torch.nn.functional.scaled_dot_product_attention restricted to the flash backend
(torch.nn.attention.sdpa_kernel(SDPBackend.FLASH_ATTENTION)), bf16, one query token per request,
head dim 128, and times each launch with CUDA events: warm-up launches, then --iters timed
launches (median, min, max). Before each timed launch the stream is held busy for about 50 us
(torch.cuda._sleep), so the time is device time without Python's launch overhead, as helix-micro's
CUDA timer does. KV buffers rotate over enough sets that one cycle reads at least four
L2 caches, so no timed launch reads KV left in L2 by the previous one.

Shapes (B, q heads, KV heads, tokens), as helix-micro's attn_gqa cases:
  one KV head with 8 or 16 query heads at B = 1, 128K, 256K, 512K and 1M tokens
      (the per-GPU shard shapes of Llama-3.1-405B under TP and Helix);
  64 query / 8 KV heads at B = 1, 1M tokens and at B = 8, 128K tokens;
  16 query / 1 KV head at B = 16, 64K tokens.
The last three are not shard shapes of the default models: helix-micro measures them through
--gqa-shapes (scripts/gpu_micro.sh passes them).

Output (--out FILE.json): {"device", "torch", "cuda", "backend", "l2_bytes", "rows": [...]}, one row
per shape: batch, q_heads, kv_heads, head_dim, tokens, kv_bytes (K and V), iters, time_us_median,
time_us_min, time_us_max, gbps (kv_bytes / median, decimal GB/s), method ("enable_gqa", or
"folded" when this torch has no enable_gqa: the group of query heads as the query length of one
KV head, the same math).

Exit codes: 0 ok; 2 bad input or torch / CUDA / the flash backend unavailable (one line why).
"""
import argparse
import json
import math
import os
import sys

HEAD_DIM = 128
HOLD_CYCLES = 100000  # about 50 us of GPU clock before each timed call
DEFAULT_SHAPES = (
    [(1, q, 1, t) for q in (8, 16) for t in (131072, 262144, 524288, 1048576)]
    + [(1, 64, 8, 1048576), (8, 64, 8, 131072), (16, 16, 1, 65536)]
)


def die(msg, code=2):
    print(f"sdpa_peer: error: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_tokens(text):
    t = text.strip()
    mult = 1
    if t[-1:] in ("K", "k"):
        mult, t = 1024, t[:-1]
    elif t[-1:] in ("M", "m"):
        mult, t = 1048576, t[:-1]
    if not t.isdigit() or int(t) < 1:
        raise ValueError(text)
    return int(t) * mult


def parse_shape(text):
    """B<b>_q<q>_kv<kv>[_d128]_T<tokens>, as helix-micro's --gqa-shapes."""
    fields = {}
    for part in text.strip().split("_"):
        head = part.rstrip("0123456789KkMm")
        key = head if head in ("B", "q", "kv", "d", "T") else None
        if key is None or key in fields:
            raise ValueError(text)
        fields[key] = part[len(head):]
    if set(fields) - {"d"} != {"B", "q", "kv", "T"}:
        raise ValueError(text)
    if "d" in fields and fields["d"] != str(HEAD_DIM):
        raise ValueError(text)
    b, q, kv = (int(fields[k]) if fields[k].isdigit() else 0 for k in ("B", "q", "kv"))
    t = parse_tokens(fields["T"])
    if min(b, q, kv) < 1 or q % kv:
        raise ValueError(text)
    return (b, q, kv, t)


def shape_name(b, q, kv, t):
    return f"B{b}_q{q}_kv{kv}_d{HEAD_DIM}/T{t}"


def load_torch():
    try:
        import torch  # noqa: F401 (imported lazily: the GPU machine has it, CI does not)
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        die(f"PyTorch (with torch.nn.attention, torch >= 2.3) is needed: {e}")
    if not torch.cuda.is_available():
        die("torch.cuda.is_available() is False: no usable GPU for PyTorch")
    return torch, SDPBackend, sdpa_kernel


def measure(torch, sdpa_kernel, backend, shape, iters, warmup, rotate_bytes, mem_fraction):
    b, q, kv, t = shape
    F = torch.nn.functional
    dev = torch.device("cuda")
    kv_bytes = 2 * b * kv * t * HEAD_DIM * 2
    free, _ = torch.cuda.mem_get_info()
    sets = max(1, math.ceil(rotate_bytes / kv_bytes))
    sets = max(1, min(sets, 64, int(free * mem_fraction) // kv_bytes))
    if kv_bytes > free * mem_fraction:
        raise MemoryError(f"{shape_name(*shape)}: {kv_bytes / 2**30:.2f} GiB of KV does not fit")
    gen = torch.Generator(device=dev)
    gen.manual_seed(1234 + b * 7 + q * 131 + kv * 17 + t)

    def rnd(*dims):
        return torch.rand(*dims, device=dev, dtype=torch.bfloat16, generator=gen) * 2 - 1

    query = rnd(b, q, 1, HEAD_DIM)
    keys = [rnd(b, kv, t, HEAD_DIM) for _ in range(sets)]
    values = [rnd(b, kv, t, HEAD_DIM) for _ in range(sets)]
    group = q // kv
    method = "enable_gqa"

    def call_gqa(i):
        return F.scaled_dot_product_attention(query, keys[i], values[i], enable_gqa=q != kv)

    folded_q = query.view(b, kv, group, HEAD_DIM)

    def call_folded(i):
        return F.scaled_dot_product_attention(folded_q, keys[i], values[i])

    call = call_gqa
    with sdpa_kernel(backend):
        try:
            call(0)
            torch.cuda.synchronize()
        except TypeError:  # no enable_gqa in this torch
            call, method = call_folded, "folded"
        except RuntimeError as e:
            if q == kv:
                raise
            # Some versions reject enable_gqa on the flash backend: same math, folded.
            print(f"sdpa_peer: {shape_name(*shape)}: enable_gqa refused ({str(e).splitlines()[0]});"
                  " timing the folded form", file=sys.stderr)
            call, method = call_folded, "folded"
        for i in range(warmup):
            call(i % sets)
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        times = []
        hold = getattr(torch.cuda, "_sleep", None)
        for i in range(iters):
            if hold is not None:
                hold(HOLD_CYCLES)  # the GPU waits while Python enqueues the call: device time
            start.record()
            call((warmup + i) % sets)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) * 1e3)
    del keys, values
    torch.cuda.empty_cache()
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (
        times[len(times) // 2 - 1] + times[len(times) // 2])
    return {
        "batch": b, "q_heads": q, "kv_heads": kv, "head_dim": HEAD_DIM, "tokens": t,
        "name": shape_name(b, q, kv, t), "kv_bytes": kv_bytes, "iters": iters,
        "time_us_median": med, "time_us_min": times[0], "time_us_max": times[-1],
        "gbps": kv_bytes / (med * 1e3), "method": method, "rotated_sets": sets,
        "launch_overhead_hidden": hold is not None,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--shapes", default="",
                    help="comma-separated B<b>_q<q>_kv<kv>_T<tokens> (default: the list above)")
    ap.add_argument("--iters", type=int, default=30, help="timed launches per shape (>= 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed launches first")
    ap.add_argument("--mem-fraction", type=float, default=0.8,
                    help="most of the free GPU memory the KV sets may take")
    a = ap.parse_args(argv)
    if a.iters < 20:
        die("--iters: at least 20 timed launches")
    if a.warmup < 1:
        die("--warmup: at least 1")
    try:
        shapes = [parse_shape(s) for s in a.shapes.split(",") if s.strip()] or DEFAULT_SHAPES
    except ValueError as e:
        die(f"--shapes: '{e}' is not B<b>_q<q>_kv<kv>_T<tokens> (q a multiple of kv)")
    try:
        open(a.out + ".tmp", "w").close()
        os.remove(a.out + ".tmp")
    except OSError as e:
        die(f"--out: cannot create '{a.out}': {e.strerror}")
    torch, SDPBackend, sdpa_kernel = load_torch()
    props = torch.cuda.get_device_properties(0)
    l2 = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
    rows = []
    for s in shapes:
        try:
            r = measure(torch, sdpa_kernel, SDPBackend.FLASH_ATTENTION, s, a.iters, a.warmup,
                        4 * l2, a.mem_fraction)
        except (MemoryError, torch.cuda.OutOfMemoryError) as e:
            die(f"{shape_name(*s)}: out of GPU memory ({str(e).splitlines()[0]})")
        except RuntimeError as e:
            die(f"{shape_name(*s)}: the flash SDPA backend failed: {str(e).splitlines()[0]}")
        rows.append(r)
        print(f"sdpa {r['name']:<28} {r['time_us_median']:10.1f} us {r['gbps']:8.1f} GB/s "
              f"({r['method']}, {r['rotated_sets']} KV sets)", flush=True)
    doc = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "cuda": torch.version.cuda, "backend": "flash (sdpa_kernel FLASH_ATTENTION)",
           "dtype": "bf16", "l2_bytes": l2, "rows": rows}
    with open(a.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    print(f"sdpa_peer: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
