"""helix-report: plots and summary from CPU-backend traces and from synthetic traces holding
every trace kind."""
import os

import h5py

from conftest import call_main, run_tool
from helixbench.report import main as report_main
import synth

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pngs(folder):
    out = {}
    for name in os.listdir(folder):
        if name.endswith(".png"):
            with open(os.path.join(folder, name), "rb") as f:
                head = f.read(8)
            assert head == PNG_MAGIC, name
            assert os.path.getsize(os.path.join(folder, name)) > 10_000, name
            out[name] = True
    return sorted(out)


def test_report_of_cpu_trace(cpu_trace, tmp_path):
    out = tmp_path / "rep"
    p = run_tool("report", cpu_trace, "--out", out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert pngs(out) == ["decode_phases.png", "exposed_comm.png", "roofline.png",
                         "ttl_vs_batch.png", "ttl_vs_seq.png"]
    md = (out / "summary.md").read_text()
    for text in ("## Decode: tiny-gqa", "| helix-hopb |", "TTL median (us)", "Fastest layout",
                 "HOP-B", "link_representative", "![decode_phases.png](decode_phases.png)",
                 "Rank 0 against its roofline", "![roofline.png](roofline.png)"):
        assert text in md, text
    assert md.count("| yes |") == 16


def test_default_output_folder_is_beside_the_trace(tmp_path):
    trace = synth.write_decode(tmp_path / "t.h5", runs=synth.default_runs(seqs=(1024,),
                                                                          batches=(1,)))
    p = call_main(report_main, trace)
    assert p.returncode == 0, p.stderr
    # one configuration: no TTL-vs-seq or TTL-vs-batch lines to draw
    assert pngs(tmp_path / "t-report") == ["decode_phases.png", "exposed_comm.png"]


def test_report_of_every_trace_kind(tmp_path):
    trace = synth.write_everything(tmp_path / "all.h5")
    out = tmp_path / "rep"
    p = call_main(report_main, trace, "--out", out)
    assert p.returncode == 0, p.stderr
    assert pngs(out) == ["collective_busbw.png", "decode_phases.png", "disagg_pareto.png",
                         "exposed_comm.png", "kernel_bandwidth.png", "model_pareto.png",
                         "ttl_vs_batch.png", "ttl_vs_seq.png"]
    md = (out / "summary.md").read_text()
    for text in ("cuda on NVIDIA H200", "## Kernels", "of ceiling", "## Collectives",
                 "## Cost model: Pareto frontiers", "## Disaggregated serving",
                 "refused: needs 200 GB", "priced by the cost model rather than run: attn_comm",
                 "| disagg |"):
        assert text in md, text


def test_trace_with_only_model_points(tmp_path):
    trace = tmp_path / "model.h5"
    with h5py.File(trace, "w") as f:
        synth.root(f, kind="model")
        synth.write_model(f)
    p = call_main(report_main, trace, "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr
    assert pngs(tmp_path / "rep") == ["model_pareto.png"]


def test_sweep_trace_with_two_models_gets_one_section_each(tmp_path):
    trace = tmp_path / "two.h5"
    synth.write_decode(trace, model="tiny-gqa")
    with h5py.File(trace, "a") as f:
        g = f["decode"]
        for name in list(g):
            new = f"run_{len(g):04d}"
            g.copy(g[name], g, name=new)
            g[new].attrs["model"] = "tiny-mla-moe"
    p = call_main(report_main, trace, "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert md.count("## Decode:") == 2
    assert "decode_phases_tiny-mla-moe-n4-cpu-cpu.png" in pngs(tmp_path / "rep")


def test_bad_input(tmp_path):
    p = call_main(report_main, tmp_path / "missing.h5")
    assert p.returncode == 2 and "no such file" in p.stderr
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        synth.root(f)
    p = call_main(report_main, empty)
    assert p.returncode == 2 and "nothing to report" in p.stderr
    p = run_tool("report", "--help")
    assert p.returncode == 0 and "us" in p.stdout and "PNG" in p.stdout
