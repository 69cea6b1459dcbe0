"""fastflow.bench on the CPU: the rows, their spread, interleaving, warm-up, the record's metadata.
No timing is asserted: only the bookkeeping around the timings."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from fastflow import bench


@pytest.fixture(autouse=True)
def short_warm_up(monkeypatch, request):
    """Bounded warm-up keeps these tests to seconds on a busy CI machine (the rule itself is tested
    in test_warm_up_runs_until_stable)."""
    if request.node.name != "test_warm_up_runs_until_stable":
        monkeypatch.setattr(bench, "_WARMUP_EXTRA", 2)


def _rows(**kw):
    logs = []
    rows = bench.run_model_bench(64, 64, 1, "cpu", warmup=1, repeats=3, log=logs.append, **kw)
    return rows, logs


def test_cpu_rows_fp32_bf16_fp16_with_spread():
    rows, logs = _rows()
    names = [(r.impl, r.precision) for r in rows]
    assert names == [("reference", "fp32"), ("reference", "bf16"), ("fastflow", "fp32"), ("fastflow", "bf16"),
                     ("fastflow", "fp16")]
    assert any("--compile" in s for s in logs)  # says how to get the frozen inductor rows
    for r in rows:
        assert r.runs == 3 and r.warmup_runs >= 1
        assert 0 < r.min_ms <= r.median_ms <= r.max_ms
        assert 0 <= r.iqr_ms <= r.max_ms - r.min_ms
        assert r.speedup_vs_reference > 0 and r.compile_s is None
    assert rows[0].speedup_vs_reference == 1.0 and rows[0].rel_diff == 0.0
    ff = {r.precision: r for r in rows if r.impl == "fastflow"}
    assert ff["fp32"].rel_diff < 1e-5
    assert ff["bf16"].rel_diff < 0.05 and ff["fp16"].rel_diff < 5e-3
    table = bench.format_table(rows)
    assert "min..max ms" in table and "IQR" in table and "inductor" not in table


def test_precision_filter_keeps_the_baseline():
    rows, _ = _rows(precisions=["bf16"])
    assert [(r.impl, r.precision) for r in rows] == [("reference", "fp32"), ("reference", "bf16"), ("fastflow", "bf16")]


def test_compile_failure_is_reported_as_skipped(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    rows, logs = _rows(include_compile=True, precisions=["fp32"])
    assert [r.impl for r in rows] == ["reference", "fastflow"]
    said = [s for s in logs if "inductor_frozen" in s]
    assert said and all("skipped" in s and "no C++ compiler" in s for s in said)
    import torch._inductor.config as cfg

    assert cfg.freezing is False  # restored after the run


def test_wide_spread_is_flagged():
    row = bench.BenchRow("fastflow", "bf16", 1, 64, 64, 10.0, 100.0, 0.1, speedup_vs_reference=2.0, rel_diff=1e-3,
                         min_ms=8.0, max_ms=30.0, iqr_ms=4.0, runs=10, wide_spread=True)
    calm = bench.BenchRow("reference", "fp32", 1, 64, 64, 20.0, 50.0, 0.05, speedup_vs_reference=1.0, rel_diff=0.0,
                          min_ms=19.0, max_ms=21.0, iqr_ms=0.5, runs=10)
    out = bench.format_table([calm, row])
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "fastflow bf16" in warnings[0] and "40%" in warnings[0]


def test_warm_up_runs_until_stable():
    calls = []

    def fn(x):  # 25% faster each call for five calls (caches, lazy init), then steady
        calls.append(1)
        time.sleep(0.02 / 0.75 ** max(0, 6 - len(calls)))

    n = bench._warm_up(fn, [None], warmup=1, cuda=False)
    assert 7 <= n <= 15  # stopped once three steady runs agreed, not at the minimum or the cap


def test_spread_quartiles():
    st = bench._spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert st == {"median_ms": 3.0, "min_ms": 1.0, "max_ms": 5.0, "iqr_ms": 2.0}
    assert bench._spread([7.0])["iqr_ms"] == 0.0


def test_environment_names_versions_and_device():
    env = bench.bench_environment("cpu")
    import fastflow

    assert env["fastflow"] == fastflow.__version__ and env["torch"] == torch.__version__
    assert env["device"].startswith("CPU") and env["threads"] >= 1
    assert env["cpu_bf16_compute"] in ("bfloat16", "float32")
    assert "commit" in env  # None outside a git checkout
    paths = env["cpu_paths"]
    assert set(paths) == {"fp32", "bf16", "fp16"} and "fp16 computes in float32" in paths["fp16"]
    # the bf16 path follows the compute dtype: bf16 names the ISA it runs on, float32 says why not
    if env["cpu_bf16_compute"] == "bfloat16":
        assert paths["bf16"].startswith("oneDNN bf16 on ") and paths["bf16"].split(" on ")[1].split()[0] in ("AMX", "AVX512-BF16")
    else:
        assert "float32" in paths["bf16"] or "no oneDNN" in paths["bf16"]


def test_cpu_isa_path_honours_onednn_cap(monkeypatch):
    """With oneDNN capped below AMX (the stand-in for a CPU without AMX), bf16 reports AVX512-BF16."""
    from fastflow.model import cpu

    if cpu.cpu_compute_dtype(torch.bfloat16) != torch.bfloat16:
        pytest.skip("this CPU has no oneDNN bf16 path")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu.cpu_isa_path(torch.bfloat16) == "oneDNN bf16 on AVX512-BF16 (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16)"
    monkeypatch.setenv("FASTFLOW_CPU_BF16", "fp32")
    assert cpu.cpu_isa_path(torch.bfloat16).startswith("oneDNN float32 (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16): ")


def test_cli_json_record(tmp_path):
    out = tmp_path / "b.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "fastflow.cli", "bench", "--device", "cpu", "--size", "64x64",
                        "--repeats", "2", "--warmup", "1", "--precision", "bf16", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)  # not the source tree
    assert r.returncode == 0, r.stderr
    assert "fastflow CPU paths: fp32: " in r.stdout
    rec = json.loads(out.read_text())
    assert {"fastflow", "commit", "torch", "device", "threads", "bench", "cpu_paths"} <= set(rec)
    assert rec["threads"] == 1
    assert [(b["impl"], b["precision"]) for b in rec["bench"]] == [("reference", "fp32"), ("reference", "bf16"),
                                                                    ("fastflow", "bf16")]
    assert all({"median_ms", "min_ms", "max_ms", "iqr_ms", "speedup_vs_reference"} <= set(b) for b in rec["bench"])


@pytest.mark.parametrize("bad, msg", [("fp8", "--precision"), ("0", "--threads")])
def test_cli_bad_bench_options(bad, msg, tmp_path):
    opt = ["--precision", bad] if msg == "--precision" else ["--threads", bad]
    r = subprocess.run([sys.executable, "-m", "fastflow.cli", "bench", "--device", "cpu", *opt],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
