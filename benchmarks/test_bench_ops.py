"""pytest-benchmark: the I/O ops (prologue, output upsample, warp), fastflow vs the reference.

Before timing, each case checks that fastflow's output agrees with the reference op on the same
input (docs/design.md section 7: float32 within 1e-5 relative), so a fast but wrong op fails here.
"""
import pytest
import torch

from conftest import synced
from fastflow import ops, reference

# fp32 bound of the design's section 7 (both sides compute in float32; the reference of
# normalize_pack in float64, rounded once).
TOL = 1e-5


def _timed(benchmark, group, impl, fastflow_fn, reference_fn, device):
    """Checks fastflow_fn() against reference_fn(), then times the one `impl` names."""
    got, want = fastflow_fn(), reference_fn()
    assert got.shape == want.shape and got.dtype == want.dtype, (group, got.shape, got.dtype, want.shape, want.dtype)
    err = float((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-300))
    assert err <= TOL, f"{group}: fastflow differs from the reference by {err:.3e} (relative) > {TOL}"
    benchmark.group = group
    benchmark(synced(fastflow_fn if impl == "fastflow" else reference_fn, device))


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_normalize_pack(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    pair = torch.rand(bench_cfg["batch"], 3, 2, bench_cfg["h"], bench_cfg["w"], device=d) * 255
    _timed(benchmark, "normalize_pack", impl, lambda: ops.normalize_pack(pair, 255.0, 8),
           lambda: reference.normalize_pack(pair, 255.0, 8), d)


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_upsample_flow(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    flow2 = torch.randn(bench_cfg["batch"], 2, bench_cfg["h"] // 4, bench_cfg["w"] // 4, device=d)
    _timed(benchmark, "upsample_flow", impl, lambda: ops.upsample_flow(flow2), lambda: reference.upsample_flow(flow2), d)


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_warp(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    x = torch.randn(bench_cfg["batch"], 3, bench_cfg["h"], bench_cfg["w"], device=d)
    flow = torch.randn(bench_cfg["batch"], 2, bench_cfg["h"], bench_cfg["w"], device=d) * 4
    _timed(benchmark, "warp", impl, lambda: ops.warp(x, flow), lambda: reference.warp(x, flow), d)
