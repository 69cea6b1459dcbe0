"""pytest-benchmark: the I/O ops (prologue, output upsample, warp), fastflow vs the reference."""
import pytest
import torch

from conftest import synced
from fastflow import ops, reference


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_normalize_pack(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    pair = torch.rand(bench_cfg["batch"], 3, 2, bench_cfg["h"], bench_cfg["w"], device=d) * 255
    fn = (lambda: ops.normalize_pack(pair, 255.0, 8)) if impl == "fastflow" else (lambda: reference.normalize_pack(pair, 255.0, 8))
    benchmark.group = "normalize_pack"
    benchmark(synced(fn, d))


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_upsample_flow(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    flow2 = torch.randn(bench_cfg["batch"], 2, bench_cfg["h"] // 4, bench_cfg["w"] // 4, device=d)
    fn = (lambda: ops.upsample_flow(flow2)) if impl == "fastflow" else (lambda: reference.upsample_flow(flow2))
    benchmark.group = "upsample_flow"
    benchmark(synced(fn, d))


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
def test_warp(benchmark, bench_cfg, impl):
    d = bench_cfg["device"]
    x = torch.randn(bench_cfg["batch"], 3, bench_cfg["h"], bench_cfg["w"], device=d)
    flow = torch.randn(bench_cfg["batch"], 2, bench_cfg["h"], bench_cfg["w"], device=d) * 4
    fn = (lambda: ops.warp(x, flow)) if impl == "fastflow" else (lambda: reference.warp(x, flow))
    benchmark.group = "warp"
    benchmark(synced(fn, d))
