#!/usr/bin/env python3
"""Randomized exactness sweep of the CUDA backend against the single-rank fp64 reference.

Seeded and reproducible: the seed picks, for each test model and group, a KV block length, the
attention and FFN splits, sequence lengths (primes, values just below, on and above KV block
boundaries and whole round-robin rounds, and uniform draws in 1..5000), batches in 1..16 and a
number of verified decode steps that crosses a block boundary. Each group is one `helix-bench
decode` job (every layout x S x B of the group is one case, one run group in its trace). The cases
are listed before they run; a summary table is printed last.

Exit codes: 0 every case verified; 1 a case failed or a job broke; 2 bad arguments; 77 fewer GPUs
visible than --ranks (CTest: skipped).

Example (4 GPUs, one rank each):
  scripts/gpu_exact_sweep.py --ranks 4 --bin build-gpu/bin/helix-bench --out-dir results/gpu-exact
"""
import argparse
import os
import random
import shlex
import subprocess
import sys
import time

MODELS = ("tiny-gqa", "tiny-mla-moe")
LAYOUTS = "tp,kvp,helix,helix-hopb"
MAX_SEQ = 5000
KV_HEADS = {"tiny-gqa": 4, "tiny-mla-moe": 1}
EXPERTS = {"tiny-gqa": 0, "tiny-mla-moe": 8}


def primes_upto(n):
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return [i for i in range(n + 1) if sieve[i]]


PRIMES = primes_upto(MAX_SEQ)


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def pick_seqs(rng, kv_block, kvp, count):
    """Sequence lengths: a prime, a block boundary -1/0/+1, a whole round -1/+1, uniform draws."""
    blocks = [kv_block * rng.randint(1, MAX_SEQ // kv_block)]
    rounds = [kv_block * kvp * rng.randint(1, max(1, MAX_SEQ // (kv_block * kvp)))]
    pool = [
        rng.choice(PRIMES),
        blocks[0] + rng.choice((-1, 0, 1)),
        rounds[0] + rng.choice((-1, 1)),
        rng.choice((1, 2, 3, rng.choice(PRIMES[:40]))),
        rng.randint(1, MAX_SEQ),
        rng.choice((MAX_SEQ - 1, MAX_SEQ, rng.randint(MAX_SEQ // 2, MAX_SEQ))),
    ]
    pool = [min(MAX_SEQ, max(1, s)) for s in pool]
    rng.shuffle(pool)
    out = []
    for s in pool:
        if s not in out:
            out.append(s)
        if len(out) == count:
            break
    return sorted(out)


def make_groups(seed, ranks, groups_per_model, seqs_per_group, batches_per_group, models=MODELS):
    rng = random.Random(f"{seed}:{ranks}")
    groups = []
    for model in MODELS:
        for g in range(groups_per_model):
            kv_block = rng.choice((1, 2, 3, 4, 7, 16, 32))
            tpa = rng.choice([d for d in divisors(ranks) if d <= KV_HEADS[model]])
            kvp = ranks // tpa
            args = ["--kvp", str(kvp), "--tpa", str(tpa)]
            if EXPERTS[model]:
                ep = rng.choice([d for d in divisors(ranks) if EXPERTS[model] % d == 0])
                args += ["--ep", str(ep), "--tpf", str(ranks // ep)]
            else:
                tpf = ranks
                args += ["--tpf", str(tpf), "--ep", "1"]
            steps = kv_block + 1 + rng.randint(0, min(kv_block, 8))
            batches = sorted(rng.sample(range(1, 17), batches_per_group))
            seqs = pick_seqs(rng, kv_block, kvp, seqs_per_group)
            chunks = rng.choice((2, 3, 4))
            if model not in models:
                continue
            groups.append({
                "name": f"{model}_np{ranks}_g{g}",
                "model": model,
                "seqs": seqs,
                "batches": batches,
                "kv_block": kv_block,
                "steps": steps,
                "args": args + ["--hopb-chunks", str(chunks)],
            })
    return groups


def visible_gpus():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if out.returncode != 0:
        return 0
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        n = min(n, len([d for d in cvd.split(",") if d.strip()]))
    return n


def check_trace(path, ranks, expect_nccl):
    """Returns (cases, failures, flips, max_err, lines) read from one decode trace."""
    import h5py

    lines = []
    cases = failures = flips = 0
    max_err = 0.0
    with h5py.File(path, "r") as f:
        for name in sorted(f["decode"]):
            run = f["decode"][name]
            a = run.attrs
            cases += 1
            ok = bool(a["verified"]) and bool(a["verify_ran"]) and a["status"] == "ok"
            if ranks > 1 and expect_nccl:
                if a["comm_backend"] != "nccl" or not bool(a["link_representative"]):
                    ok = False
                    lines.append(f"  {name}: comm_backend {a['comm_backend']}, "
                                 f"link_representative {a['link_representative']}")
            n_flips = int(a.get("routing_flips", 0))
            flips += n_flips
            err = float(a["max_rel_err"])
            max_err = max(max_err, err)
            if not ok:
                failures += 1
                lines.append(f"  {name}: {a['layout']} B={a['batch']} S={a['seq_len']} "
                             f"verified={a['verified']} max_rel_err={err:.2e} flips={n_flips} "
                             f"rejected={int(a.get('routing_flips_rejected', 0))}")
    return cases, failures, flips, max_err, lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--ranks", type=int, required=True, help="MPI ranks, one GPU each (1, 2, 4, 8)")
    p.add_argument("--bin", default="build-gpu/bin/helix-bench", help="helix-bench executable")
    p.add_argument("--out-dir", required=True, help="folder for the traces (one per group)")
    p.add_argument("--seed", type=int, default=2026, help="seed of the case choice (default 2026)")
    p.add_argument("--groups", type=int, default=2,
                   help="groups (jobs) per test model (default 2)")
    p.add_argument("--seqs", type=int, default=3, help="sequence lengths per group (default 3)")
    p.add_argument("--batches", type=int, default=3, help="batch sizes per group (default 3)")
    p.add_argument("--mpirun", default="mpirun",
                   help="launcher command (default mpirun; e.g. 'srun --mpi=pmix')")
    p.add_argument("--allow-shared-gpu", action="store_true",
                   help="run even with fewer GPUs than ranks (MPI host staging; the traces then "
                        "say comm_backend = mpi-host-staged)")
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated test models (default {','.join(MODELS)})")
    p.add_argument("--backend", choices=("cuda", "cpu"), default="cuda",
                   help="executor (default cuda; cpu checks the sweep itself without a GPU)")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    a = p.parse_args(argv)
    if a.ranks < 1 or a.groups < 1 or not 1 <= a.seqs <= 6 or not 1 <= a.batches <= 16:
        p.error("--ranks, --groups >= 1; --seqs in 1..6; --batches in 1..16")

    models = [m for m in a.models.split(",") if m]
    if not models or any(m not in MODELS for m in models):
        p.error(f"--models: choose from {', '.join(MODELS)}")
    groups = make_groups(a.seed, a.ranks, a.groups, a.seqs, a.batches, models)
    layouts = LAYOUTS.split(",")
    total = sum(len(g["seqs"]) * len(g["batches"]) * len(layouts) for g in groups)
    print(f"gpu exactness sweep: seed {a.seed}, {a.ranks} rank(s), {len(groups)} jobs, "
          f"{total} cases (layouts {LAYOUTS})")
    cmds = []
    for g in groups:
        out = os.path.join(a.out_dir, g["name"] + ".h5")
        cmd = (shlex.split(a.mpirun) + ["-np", str(a.ranks)] if a.mpirun else []) + [
            a.bin, "decode", "--backend", a.backend, "--model", g["model"], "--layouts", LAYOUTS,
            "--seq", ",".join(map(str, g["seqs"])), "--batch", ",".join(map(str, g["batches"])),
            "--kv-block", str(g["kv_block"]), "--decode-steps", str(g["steps"]),
            *g["args"], "--iters", "1", "--warmup", "0", "--quiet", "--out", out]
        cmds.append((g, out, cmd))
        print(f"[{g['name']}] S={g['seqs']} B={g['batches']} kv_block={g['kv_block']} "
              f"decode_steps={g['steps']} {' '.join(g['args'])}")
        print("   " + " ".join(shlex.quote(c) for c in cmd))
    sys.stdout.flush()
    if a.list:
        return 0

    gpus = visible_gpus() if a.backend == "cuda" else a.ranks
    if gpus == 0:
        print("no GPU visible: skipped")
        return 77
    if gpus < a.ranks and not a.allow_shared_gpu:
        print(f"{a.ranks} ranks need {a.ranks} GPUs, {gpus} visible: skipped")
        return 77
    os.makedirs(a.out_dir, exist_ok=True)
    rows, bad = [], 0
    start = time.time()
    for i, (g, out, cmd) in enumerate(cmds):
        t0 = time.time()
        print(f"[{i + 1}/{len(cmds)}] {g['name']} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.time() - t0
        if proc.returncode not in (0, 3) or not os.path.exists(out):
            bad += 1
            rows.append((g["name"], 0, 0, 0, float("nan"), secs, "job failed"))
            print(proc.stdout[-4000:] + proc.stderr[-4000:])
            continue
        expect_nccl = a.backend == "cuda" and gpus >= a.ranks
        cases, failures, flips, max_err, lines = check_trace(out, a.ranks, expect_nccl)
        expected = len(g["seqs"]) * len(g["batches"]) * len(layouts)
        if cases != expected:
            lines.append(f"  {cases} run groups in the trace, {expected} expected")
            failures += 1
        if proc.returncode == 3 and failures == 0:
            lines.append("  exit code 3 but every run group verified")
            failures += 1
        bad += failures
        rows.append((g["name"], cases, cases - failures, flips, max_err, secs,
                     "ok" if failures == 0 else "FAILED"))
        for line in lines:
            print(line)
    print(f"\n{'job':<22} {'cases':>6} {'verified':>9} {'routing_flips':>14} "
          f"{'max_rel_err':>12} {'seconds':>8}  status")
    for name, cases, ok, flips, err, secs, status in rows:
        print(f"{name:<22} {cases:>6} {ok:>9} {flips:>14} {err:>12.2e} {secs:>8.1f}  {status}")
    n_cases = sum(r[1] for r in rows)
    n_ok = sum(r[2] for r in rows)
    print(f"{'total':<22} {n_cases:>6} {n_ok:>9} {sum(r[3] for r in rows):>14} "
          f"{'':>12} {time.time() - start:>8.1f}  {'ok' if bad == 0 else 'FAILED'}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
