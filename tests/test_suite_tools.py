"""The GPU suite's record tools (run on the CPU): targets from bench rows, merging split records."""
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.skipif(not (BENCH / "suite.py").exists(), reason="needs the source tree")


@pytest.fixture(scope="module")
def tools():
    sys.path.insert(0, str(BENCH))
    import merge_records
    import suite

    return suite, merge_records


def _row(impl, prec, batch, ms, mem=100.0, h=448, w=1024):
    return {"impl": impl, "precision": prec, "batch": batch, "height": h, "width": w, "median_ms": ms,
            "pairs_per_s": batch * 1e3 / ms, "peak_mem_mb": mem}


def test_targets(tools):
    suite, _ = tools
    rows = [_row("fastflow", "fp16", 1, 0.2, 150), _row("torch_compile", "fp16", 1, 0.8), _row("fastflow", "fp16", 16, 2.0),
            _row("fastflow", "tf32", 1, 1.0), _row("reference", "tf32", 1, 2.0), _row("fastflow", "fp32", 1, 3.0),
            _row("reference", "fp32", 1, 2.4), _row("fastflow", "fp16", 1, 9.0, h=384, w=512)]
    t = suite.targets(rows)
    assert t["fp16_b1_448x1024_ms"] == 0.2 and t["fp16_b1_vs_torch_compile"] == pytest.approx(4.0)
    assert t["fp16_b16_pairs_per_s"] == pytest.approx(8000.0)
    assert t["tf32_vs_reference_defaults"] == pytest.approx(2.0) and t["fp32_vs_reference_tf32_off"] == pytest.approx(0.8)
    assert t["fp16_b1_peak_mem_mb"] == 150
    assert suite.targets([])["fp16_b1_vs_torch_compile"] is None


def test_merge(tools):
    _, merge_records = tools
    a = {"gpu": "H100", "csrc_tree": "abc", "commit": "1234", "date": "d", "tests": {"passed": 9, "failed": 0, "skipped": 1},
         "sanitizer": {"memcheck": "clean"}}
    b = {"gpu": "H100", "csrc_tree": "abc", "commit": "1234", "date": "d", "tests": {"passed": 0, "failed": 0, "skipped": 0},
         "bench": [1], "layers": [2]}
    m = merge_records.merge([a, b])
    assert m["tests"]["passed"] == 9 and m["sanitizer"] == {"memcheck": "clean"} and m["bench"] == [1] and m["layers"] == [2]
    with pytest.raises(SystemExit, match="different csrc trees"):
        merge_records.merge([a, dict(b, csrc_tree="other")])
    with pytest.raises(SystemExit, match="different GPUs"):
        merge_records.merge([a, dict(b, gpu="H200")])
