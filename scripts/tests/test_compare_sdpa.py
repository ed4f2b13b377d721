"""compare_sdpa.py and sdpa_peer.py on synthetic inputs (no GPU, no torch needed)."""
import json
import os
import subprocess
import sys

import pytest

import compare_sdpa as cs
import sdpa_peer as sp

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micro_row(name, us, gbps=2000.0, frac=0.9, verified=1):
    return {"name": name, "time_us_median": us, "gbps": gbps, "fraction_of_ceiling": frac,
            "verified": verified}


def sdpa_row(b, q, kv, t, us):
    return {"batch": b, "q_heads": q, "kv_heads": kv, "head_dim": 128, "tokens": t,
            "time_us_median": us, "gbps": 1.0}


def test_micro_key_parses_models_and_custom():
    assert cs.micro_key("attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072") == (1, 16, 1, 128,
                                                                              131072)
    assert cs.micro_key("attn_gqa/custom/B8_q64_kv8_d128/T131072") == (8, 64, 8, 128, 131072)
    assert cs.micro_key("attn_mla/deepseek-r1/B1_h16_lora512_rope64/T131072") is None
    assert cs.micro_key("gemm/llama-3.1-405b/M1_K16384_N6656") is None


def test_bars_pass_and_miss_with_shortfall():
    micro = [micro_row("attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072", 40.0),
             micro_row("attn_gqa/llama-3.1-405b/B1_q8_kv1_d128/T131072", 50.0),
             micro_row("attn_gqa/custom/B8_q64_kv8_d128/T131072", 1500.0)]
    sdpa = [sdpa_row(1, 16, 1, 131072, 108.0),   # 2.7x: pass (bar 2.5)
            sdpa_row(1, 8, 1, 131072, 100.0),    # 2.0x: miss by 20%
            sdpa_row(8, 64, 8, 131072, 1459.0)]  # 0.97x: miss (bar 1.0)
    res = cs.compare(micro, sdpa)
    assert [r["bar"] for r in res] == [2.5, 2.5, 1.0]
    assert [r["ok"] for r in res] == [True, False, False]
    assert res[1]["shortfall"] == pytest.approx(0.2)
    assert res[2]["shortfall"] == pytest.approx(1 - 1459.0 / 1500.0)
    code, msgs = cs.verdict(res)
    assert code == 1
    assert any("B1_q8_kv1_d128/T131072" in m and "short by 20.0%" in m for m in msgs)
    table = cs.format_table(res, 3000.0)
    assert "pass" in table and "MISS (short by 20.0%)" in table


def test_fastest_of_duplicate_rows_and_other_bar_equal_is_pass():
    micro = [micro_row("attn_gqa/llama-3.1-405b/B16_q16_kv1_d128/T65536", 250.0),
             micro_row("attn_gqa/custom/B16_q16_kv1_d128/T65536", 240.0)]
    res = cs.compare(micro, [sdpa_row(16, 16, 1, 65536, 240.0)])
    assert res[0]["ours"]["name"].startswith("attn_gqa/custom/")
    assert res[0]["ok"] is True  # equal time: not slower
    assert cs.verdict(res) == (0, [])


def test_missing_shapes_fail_unless_allowed():
    micro = [micro_row("attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072", 40.0)]
    sdpa = [sdpa_row(1, 16, 1, 131072, 108.0), sdpa_row(1, 64, 8, 1048576, 1493.0)]
    res = cs.compare(micro, sdpa)
    assert res[1]["ours"] is None and res[1]["ok"] is None
    code, msgs = cs.verdict(res)
    assert code == 1 and "MISSING B1_q64_kv8_d128/T1048576" in msgs[0]
    assert cs.verdict(res, allow_missing=True) == (0, [])
    code, msgs = cs.verdict(cs.compare([], sdpa), allow_missing=True)
    assert code == 1 and "no SDPA shape matched" in msgs[-1]


def test_custom_bars():
    micro = [micro_row("attn_gqa/x/B1_q16_kv1_d128/T131072", 40.0)]
    res = cs.compare(micro, [sdpa_row(1, 16, 1, 131072, 108.0)], one_kv_bar=3.0)
    assert res[0]["ok"] is False and res[0]["shortfall"] == pytest.approx(0.1)


def write_micro_h5(path, rows, ceiling=3000.0):
    h5py = pytest.importorskip("h5py")
    import numpy as np
    with h5py.File(path, "w") as f:
        g = f.create_group("micro")
        g.attrs["ceiling_gbps"] = ceiling
        k = g.create_group("kernels")
        k.create_dataset("name", data=[r["name"] for r in rows],
                         dtype=h5py.string_dtype(encoding="utf-8"))
        for c in ("time_us_median", "gbps", "fraction_of_ceiling"):
            k.create_dataset(c, data=np.array([r[c] for r in rows], dtype="f8"))
        k.create_dataset("verified", data=np.array([r["verified"] for r in rows], dtype="i8"))


def test_main_end_to_end(tmp_path, capsys):
    h5 = tmp_path / "micro.h5"
    write_micro_h5(str(h5), [micro_row("attn_gqa/llama-3.1-405b/B1_q16_kv1_d128/T131072", 40.0),
                             micro_row("stream/read_only/4294967296B", 1400.0)])
    js = tmp_path / "sdpa.json"
    js.write_text(json.dumps({"rows": [sdpa_row(1, 16, 1, 131072, 108.0)]}))
    out = tmp_path / "cmp.json"
    assert cs.main([str(h5), str(js), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2.70x" in text and "every bar met" in text
    assert json.loads(out.read_text())["rows"][0]["ok"] is True
    js.write_text(json.dumps([sdpa_row(1, 16, 1, 131072, 80.0)]))  # a bare list of rows works
    assert cs.main([str(h5), str(js)]) == 1
    assert "short by 20.0%" in capsys.readouterr().out


def test_main_bad_input(tmp_path, capsys):
    js = tmp_path / "sdpa.json"
    js.write_text("{}")
    assert cs.main([str(tmp_path / "none.h5"), str(js)]) == 2
    assert "compare_sdpa: error:" in capsys.readouterr().err
    h5 = tmp_path / "micro.h5"
    write_micro_h5(str(h5), [micro_row("attn_gqa/m/B1_q16_kv1_d128/T131072", 40.0)])
    assert cs.main([str(h5), str(js)]) == 2
    assert "no rows" in capsys.readouterr().err


def test_sdpa_peer_shapes_match_helix_micro_names():
    assert sp.parse_shape("B1_q64_kv8_T1M") == (1, 64, 8, 1048576)
    assert sp.parse_shape("B16_q16_kv1_d128_T64K") == (16, 16, 1, 65536)
    for bad in ("B1_q6_kv4_T1M", "B1_q8_T1M", "B1_q8_kv1_d64_T1K", "x", "B1_q8_kv1_T"):
        with pytest.raises(ValueError):
            sp.parse_shape(bad)
    for s in sp.DEFAULT_SHAPES:
        assert cs.micro_key("attn_gqa/custom/" + sp.shape_name(*s)) == (s[0], s[1], s[2], 128,
                                                                        s[3])
    one_kv_b1 = [s for s in sp.DEFAULT_SHAPES if s[0] == 1 and s[2] == 1]
    assert len(one_kv_b1) == 8 and len(sp.DEFAULT_SHAPES) == 11


def test_sdpa_peer_without_torch_says_why(tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "sdpa_peer.py"), "--out",
                        str(tmp_path / "s.json")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "sdpa_peer: error: PyTorch" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_micro_bars_evaluate():
    import micro_bars as mb
    big = 512 * 2**20
    rows = [
        {"kernel": "attn_gqa", "name": "attn_gqa/m/B1_q16_kv1_d128/T1048576", "shape": "",
         "bytes": big, "gbps": 4300.0, "fraction_of_ceiling": 0.95, "verified": 1},
        {"kernel": "attn_gqa", "name": "attn_gqa/m/B1_q16_kv1_d128/T131072", "shape": "",
         "bytes": big / 8, "gbps": 2000.0, "fraction_of_ceiling": 0.5, "verified": 1},
        {"kernel": "attn_mla", "name": "attn_mla/m/B1_h128_lora512_rope64/T1048576", "shape": "",
         "bytes": big, "gbps": 3400.0, "fraction_of_ceiling": 0.76, "verified": 1},
        {"kernel": "lse_combine", "name": "lse_combine/m/parts8_rows1024_d512",
         "shape": "LSE combine parts=8 rows=1024 (B=64 x 16 heads) dim=512", "bytes": 1e7,
         "gbps": 3600.0, "fraction_of_ceiling": 0.81, "verified": 0},
        {"kernel": "lse_combine", "name": "lse_combine/m/parts8_rows16_d512",
         "shape": "LSE combine parts=8 rows=16 (B=1 x 16 heads) dim=512", "bytes": 1e5,
         "gbps": 100.0, "fraction_of_ceiling": 0.02, "verified": 1},
        {"kernel": "gemm", "name": "gemm/m/M1_K16384_N6656", "shape": "", "bytes": 2.2e8,
         "gbps": 3700.0, "fraction_of_ceiling": 0.83, "verified": -1},
        {"kernel": "gemm", "name": "gemm/m/M1_K7168_N256", "shape": "", "bytes": 3.7e6,
         "gbps": 900.0, "fraction_of_ceiling": 0.2, "verified": -1},
    ]
    sdpa = [{"shape": "B1_q16_kv1_d128/T131072", "ours_us": 40.0, "speedup": 2.7, "bar": 2.5,
             "ok": True},
            {"shape": "B8_q64_kv8_d128/T131072", "ours_us": None, "speedup": None, "bar": 1.0,
             "ok": None}]
    lines, misses = mb.evaluate(rows, sdpa)
    text = "\n".join(lines)
    assert "T131072" not in text.split("vs sdpa")[0]  # small attention: no bandwidth bar
    assert "parts8_rows16" not in text and "M1_K7168_N256" not in text
    assert "MISS (short by 5.0%)" in text          # MLA 0.76 < 0.80 (GQA's bar is 0.90)
    assert "failed verification" in text           # combine row with verified = 0
    assert "not measured" in text
    assert misses == 3
