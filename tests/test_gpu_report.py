"""fastflow.perf (occupancy rules, the forecast) and benchmarks/gpu_report.py: known answers, the
constants against the CUDA headers, FLOPs against the layer table, and the report end to end."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from fastflow import network
from fastflow.perf.forecast import IGEMM_KERNELS, IGEMM_ROW_BYTES, IGEMM_STAGES, forecast_forward, forecast_layers
from fastflow.perf.occupancy import occupancy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("arch, threads, regs, smem, blocks, by", [
    ("sm_90", 256, 144, 81920, 1, "registers"),      # the 128x128 tile as first built: 36,864 regs a block
    ("sm_90", 256, 128, 81920, 2, "registers"),      # at 128 registers two fit (65,536)
    ("sm_90", 128, 106, 40960, 4, "registers"),      # 106 -> 112 per thread (units of 256 a warp)
    ("sm_90", 256, 32, 100 * 1024, 2, "shared memory"),  # 228 KB / (100 KB + 1 KB reserved)
    ("sm_80", 256, 32, 100 * 1024, 1, "shared memory"),  # 164 KB on an A100
    ("sm_90", 1024, 16, 0, 2, "warps"),              # 64 warps an SM
    ("sm_90", 32, 16, 0, 32, "blocks"),              # at most 32 blocks an SM
    ("sm_90", 256, 32, 228 * 1024, 0, "shared memory"),  # over the per-block opt-in limit
])
def test_occupancy_known_answers(arch, threads, regs, smem, blocks, by):
    occ = occupancy(arch, threads, regs, smem)
    assert (occ.blocks_per_sm, occ.limited_by) == (blocks, by)
    assert occ.warps_per_sm == blocks * (threads // 32)


def _header():
    found = glob.glob(os.path.join(ROOT, "csrc", "**", "igemm.cuh"), recursive=True)
    assert found, "no csrc/**/igemm.cuh"
    with open(found[0]) as f:
        return f.read()


def test_kernel_constants_match_the_cuda_header():
    """The forecast's tile table is the kernel's: stages, padded row bytes, BM/BN and warps."""
    text = _header()
    assert int(re.search(r"constexpr int kStages = (\d+);", text).group(1)) == IGEMM_STAGES
    m = re.search(r"constexpr int kRowBytes = kTileKBytes \+ (\d+);", text)
    assert 64 + int(m.group(1)) == IGEMM_ROW_BYTES
    for cfg, k in IGEMM_KERNELS.items():
        m = re.search(rf"struct TileConfig<{cfg}> \{{[^}}]*?static constexpr int kBM = (\d+), kBN = (\d+), "
                      rf"kWarpsM = (\d+), kWarpsN = (\d+)", text)
        bm, bn, wm, wn = map(int, m.groups())
        assert (bm, bn, 32 * wm * wn) == (k["bm"], k["bn"], k["threads"])
        assert k["smem"] == IGEMM_STAGES * (bm + bn) * IGEMM_ROW_BYTES


@pytest.mark.parametrize("precision", ["fp16", "tf32", "fp32"])
@pytest.mark.parametrize("batch", [1, 16])
def test_forecast_counts_the_layer_table_flops(precision, batch):
    """Useful FLOPs of the conv/deconv rows are the table's; issued >= useful; efficiencies in (0, 1]."""
    rows = forecast_layers(448, 1024, batch, precision)
    igemm = [r for r in rows if r.kind in ("conv", "deconv")]
    want = sum(l.flops(448, 1024, batch) for l in network.LAYERS if l.kind in ("conv", "deconv")) / 1e9
    assert sum(r.gflop_useful for r in igemm) == pytest.approx(want, rel=1e-9)
    for r in igemm:
        assert r.gflop_issued >= r.gflop_useful > 0
        assert 0 < r.mma_efficiency <= 1 and 0 < r.tail_efficiency <= 1 and r.blocks_per_sm >= 1
        assert r.time_us >= max(r.compute_us, r.memory_us)
    assert [r.layer for r in igemm] == [l.name for l in network.LAYERS if l.kind in ("conv", "deconv")]


def test_forecast_wave_quantisation_and_batch():
    """The model's compute time comes in whole rounds of resident blocks (it assumes an SM reaches
    its rate at any occupancy: latency hiding is what the measured gap shows), so one more block
    than a round costs a whole round; and a bigger batch takes longer."""
    rows = {r.layer: r for r in forecast_layers(448, 1024, 16, "fp16", regs={0: 144, 1: 106})}
    conv5 = rows["conv5"]  # B=16: 224 blocks of the 128x128 tile, 1 an SM: 2 rounds on 132 SMs
    assert conv5.grid == 224 and conv5.blocks_per_sm == 1 and conv5.tail_efficiency == pytest.approx(224 / 264)
    assert forecast_forward(448, 1024, 16, "fp16")["total_ms"] > forecast_forward(448, 1024, 1, "fp16")["total_ms"]


def test_report_end_to_end(tmp_path):
    out = tmp_path / "report.json"
    record = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.json")))
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_report.py"), "--size", "64x128", "--batch", "1,2",
           "--precision", "fp16,fp32", "--json", str(out), "--layers"] + (["--record", record[0]] if record else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert {f["precision"] for f in rep["forecasts"]} == {"fp16", "fp32"} and len(rep["forecasts"]) == 4
    assert rep["kernels"] and all(k["blocks_per_sm"] >= 1 and k["spill_bytes"] == 0 for k in rep["kernels"])
    assert "forecast (a model, not a measurement" in r.stdout and "conv2" in r.stdout


def test_suite_puts_the_forecast_beside_the_measurements():
    """The GPU suite's bench and layers stages add the forecast to each fastflow row and layer row."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from gpu_suite.stages.bench import add_forecast
    finally:
        sys.path.pop(0)
    rows = [{"impl": "fastflow", "precision": "fp16", "batch": 16, "height": 448, "width": 1024, "median_ms": 10.5},
            {"impl": "reference", "precision": "fp32", "batch": 16, "height": 448, "width": 1024, "median_ms": 76.8}]
    layers = [{"layer": "conv2", "precision": "fp16", "batch": 1, "height": 448, "width": 1024},
              {"precision": "fp16", "error": "a failed layer run keeps no forecast"}]
    add_forecast(rows, layers)
    assert rows[0]["forecast_ms"] > 0 and rows[0]["measured_over_forecast"] == pytest.approx(10.5 / rows[0]["forecast_ms"])
    assert "forecast_ms" not in rows[1] and layers[0]["forecast_us"] > 0 and "forecast_us" not in layers[1]
