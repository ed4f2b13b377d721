"""attn_variants.py on synthetic helix-micro traces (one per kernel configuration)."""
import json

import h5py
import numpy as np

import attn_variants as av


def write_trace(path, ceiling, rows):
    with h5py.File(path, "w") as f:
        g = f.create_group("micro")
        g.attrs["ceiling_gbps"] = ceiling
        k = g.create_group("kernels")
        k["name"] = np.array([r[0] for r in rows], dtype=h5py.string_dtype())
        k["time_us_median"] = np.array([r[1] for r in rows], dtype="f8")
        k["gbps"] = np.array([r[2] for r in rows], dtype="f8")
        k["fraction_of_ceiling"] = np.array([r[2] / ceiling for r in rows], dtype="f8")
        k["verified"] = np.array([r[3] for r in rows], dtype="i4")


def test_table_best_and_json(tmp_path, capsys):
    shape = "attn_gqa/m/B1_q16_kv1_d128/T1048576"
    write_trace(tmp_path / "gqa-a.h5", 4500.0,
                [(shape, 150.0, 3600.0, 1), ("stream/4GiB", 900.0, 4500.0, -1)])
    write_trace(tmp_path / "gqa-b.h5", 4400.0, [(shape, 160.0, 3300.0, 1)])
    out = tmp_path / "v.json"
    rc = av.main([str(tmp_path / "gqa-a.h5"), str(tmp_path / "gqa-b.h5"), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "stream" not in text  # only attention rows
    lines = text.splitlines()
    assert lines[0] == shape and "gqa-a" in lines[1] and "gqa-b" in lines[2]  # best first
    assert "0.800 of 4500 GB/s" in lines[1] and "0.750 of 4400 GB/s" in lines[2]
    d = json.loads(out.read_text())
    assert d["best"][shape] == "gqa-a"
    assert d["variants"]["gqa-b"]["ceiling_gbps"] == 4400.0


def test_wrong_result_fails(tmp_path, capsys):
    write_trace(tmp_path / "mla-x.h5", 4500.0,
                [("attn_mla/m/B1_h16_lora512_rope64/T131072", 60.0, 2500.0, 0)])
    assert av.main([str(tmp_path / "mla-x.h5")]) == 1
    assert "WRONG" in capsys.readouterr().out


def test_unreadable_trace(tmp_path):
    (tmp_path / "bad.h5").write_text("not hdf5")
    assert av.main([str(tmp_path / "bad.h5")]) == 2
