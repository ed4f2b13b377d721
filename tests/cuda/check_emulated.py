#!/usr/bin/env python3
"""Checks an emulated decode trace (helix-bench decode --backend cuda --emulate N): every run says
which profile priced its collectives and with which figures, the communication phases took at
least the profile's latency on the GPU, and exposed communication follows its definition
(at most the step time, never negative). Usage: check_emulated.py TRACE N [HARDWARE]."""
import sys

import h5py
import numpy as np


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    hardware = sys.argv[3] if len(sys.argv) > 3 else "gb200-nvl72"
    problems = []
    with h5py.File(path, "r") as f:
        for name, g in sorted(f["decode"].items()):
            a = g.attrs
            if a["status"] != "ok":
                problems.append(f"{name}: {a['status']}: {a['message']}")
                continue
            for key, want in [("emulated_ranks", n), ("comm_backend", "modeled"),
                              ("emulation_hardware", hardware)]:
                if a[key] != want:
                    problems.append(f"{name}: {key} = {a[key]}, expected {want}")
            for key in ["link_gbps", "emulation_floor_us", "network_gbps", "nvlink_domain_gpus"]:
                if not a[key] > 0:
                    problems.append(f"{name}: {key} = {a[key]}")
            if "exposed_comm_definition" not in a:
                problems.append(f"{name}: no exposed_comm_definition")
            ph = g["phase_us"][()]  # [iters, ranks, phases]
            names = list(g["phase_us"].attrs["phases"])
            comm = g["phase_us"].attrs["phase_is_comm"]
            step, exposed = g["step_us"][()], g["exposed_comm_us"][()]
            if np.any(exposed < 0) or np.any(exposed > step + 1e-6):
                problems.append(f"{name}: exposed communication outside [0, step]")
            if a["layout"] != "tp" and n > 1:
                attn_comm = np.median(ph[:, 0, names.index("attn_comm")])
                if attn_comm < a["link_latency_us"]:
                    problems.append(f"{name}: attn_comm {attn_comm:.1f} us below the latency")
            compute = ph[:, 0, [i for i in range(len(names)) if not comm[i]]].sum(axis=1)
            if np.any(np.abs(step - compute - exposed) > 1e-3 * step + 1e-3):
                problems.append(f"{name}: exposed != step - compute phases")
            print(f"{name}: {a['layout']:<10} B={a['batch']} step {np.median(step):.1f} us, "
                  f"exposed {np.median(exposed):.1f} us")
    for p in problems:
        print(f"check_emulated: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
