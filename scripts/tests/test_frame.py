"""helixbench.load and friends (pandas), helix-export (CSV, Parquet), and the README example."""
import os
import re

import h5py
import numpy as np
import pandas as pd
import pytest

import helixbench
import synth
from conftest import REPO, call_main, run_tool
from helixbench.export import main as export_main

BASELINE = os.path.join(REPO, "results", "baseline", "cpu-np2.h5")


@pytest.fixture
def two_traces(tmp_path):
    a = synth.write_decode(str(tmp_path / "a.h5"), ranks=2, iters=7, seed=1,
                           runs=[{"layout": "tp", "seq_len": 64, "batch": 1},
                                 {"layout": "helix", "seq_len": 64, "batch": 4}])
    b = synth.write_decode(str(tmp_path / "b.h5"), ranks=2, iters=5, seed=2,
                           runs=[{"layout": "kvp", "seq_len": 128, "batch": 2},
                                 {"layout": "helix", "seq_len": 128, "batch": 2,
                                  "attrs": {"status": "refused", "message": "needs 9 bytes"}}])
    with h5py.File(a, "a") as f:  # per-rank attributes, as the CUDA backend writes them
        f["decode/run_0001"].attrs["gpu_sm_clock_mhz_after"] = np.array([1980, 1755])
    return a, b


def test_load_one_row_per_run_rank_and_phase(two_traces):
    a, b = two_traces
    df = helixbench.load([a, b])
    assert len(df) == 3 * 2 * 10  # three runs that ran, two ranks, ten phases
    assert list(df.columns[:5]) == ["file", "run", "model", "layer_kind", "layout"]
    with h5py.File(a, "r") as f:
        ph = f["decode/run_0001/phase_us"][()]
    rows = df[(df.file == a) & (df.run == "run_0001")]
    for rank in range(2):
        got = rows[rows["rank"] == rank].set_index("phase")
        assert got.loc[synth.PHASES, "median_us"].to_numpy() == pytest.approx(
            np.median(ph[:, rank, :], axis=0))
        assert got.loc["attn_comm", "phase_is_comm"] == 1 and got.loc["ffn", "phase_is_comm"] == 0
        assert (got["iters"] == 7).all() and (got["max_us"] >= got["median_us"]).all()
    assert rows.groupby("rank")["gpu_sm_clock_mhz_after"].first().tolist() == [1980, 1755]
    assert df[df.file == a].layout.unique().tolist() == ["tp", "helix"]
    assert "refused" not in df.status.unique()


def test_load_runs_and_samples(two_traces):
    a, b = two_traces
    runs = helixbench.load_runs([a, b])
    assert len(runs) == 4 and runs.status.tolist() == ["ok", "ok", "ok", "refused"]
    assert np.isnan(runs.iloc[3]["attention_us"]) and runs.iloc[3]["message"] == "needs 9 bytes"
    with h5py.File(b, "r") as f:
        ph = f["decode/run_0000/phase_us"][()]
    assert runs.iloc[2]["ffn_us"] == pytest.approx(np.median(ph[:, :, 7].max(axis=1)))
    s = helixbench.load_samples(b)
    assert len(s) == 5 * 2 * 10 and set(s.iteration) == set(range(5))
    one = s[(s.iteration == 3) & (s["rank"] == 1) & (s.phase == "o_comm")]
    assert one.time_us.item() == pytest.approx(ph[3, 1, 6])


def test_load_table_and_errors(tmp_path):
    path = str(tmp_path / "m.h5")
    with h5py.File(path, "w") as f:
        synth.root(f, kind="micro")
        synth.write_micro(f)
    t = helixbench.load_table([path, path], "micro/collectives")
    with h5py.File(path, "r") as f:
        n = len(f["micro/collectives/collective"])
    assert len(t) == 2 * n and t.columns[0] == "file"
    with pytest.raises(helixbench.trace.TraceError, match="/disagg/points"):
        helixbench.load_table(path, "disagg/points")
    with pytest.raises(helixbench.trace.TraceError, match="no such file"):
        helixbench.load(str(tmp_path / "missing.h5"))


def test_export_csv_and_parquet_round_trip(two_traces, tmp_path):
    a, b = two_traces
    csv = tmp_path / "out.csv"
    p = call_main(export_main, a, b, "--csv", csv)
    assert p.returncode == 0, p.stderr
    assert "60 rows" in p.stdout
    back = pd.read_csv(csv, keep_default_na=False)
    want = helixbench.load([a, b])
    assert list(back.columns) == list(want.columns)
    assert back.median_us.to_numpy() == pytest.approx(want.median_us.to_numpy())
    pq = tmp_path / "runs.parquet"
    p = call_main(export_main, a, b, "--kind", "runs", "--parquet", pq)
    assert p.returncode == 0, p.stderr
    back = pd.read_parquet(pq)
    assert len(back) == 4 and back.layout.tolist() == ["tp", "helix", "kvp", "helix"]
    p = call_main(export_main, a, "--kind", "samples", "--parquet", tmp_path / "s.parquet")
    assert p.returncode == 0 and len(pd.read_parquet(tmp_path / "s.parquet")) == 2 * 7 * 2 * 10


def test_export_bad_input_writes_nothing(two_traces, tmp_path):
    a, _ = two_traces
    out = tmp_path / "x.csv"
    cases = [
        ([str(tmp_path / "missing.h5"), "--csv", str(out)], "no such file"),
        ([a, "--kind", "model/points", "--csv", str(out)], "none of the traces holds"),
        ([a, "--csv", str(tmp_path / "no-dir" / "x.csv")], "does not exist"),
    ]
    for args, msg in cases:
        p = call_main(export_main, *args)
        assert p.returncode == 2 and msg in p.stderr, (args, p.stderr)
        assert not out.exists()
    out.write_text("keep me")
    p = call_main(export_main, a, "--csv", out)
    assert p.returncode == 2 and "--force" in p.stderr and out.read_text() == "keep me"
    p = call_main(export_main, a, "--csv", out, "--force")
    assert p.returncode == 0 and out.read_text().startswith("file,run,model")
    assert sorted(os.listdir(tmp_path)) == ["a.h5", "b.h5", "x.csv"]  # no temporary files
    p = run_tool("export", "--help")
    assert p.returncode == 0 and "--parquet" in p.stdout and "samples" in p.stdout


def test_readme_example_runs():
    text = open(os.path.join(REPO, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        scope = {}
        exec(compile(blocks[0], "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert set(scope["attn"].index.get_level_values("layout")) == {"tp", "kvp", "helix",
                                                                   "helix-hopb"}
    assert ((scope["comm"] >= 0) & (scope["comm"] <= 2 * scope["runs"].step_us_median)).all()
