"""pytest-benchmark: FlowNet2-S forward, fastflow vs the PyTorch reference, same input and weights.

    pytest benchmarks/test_bench_model.py                      # 384x512 on CPU, 448x1024 on GPU
    FASTFLOW_BENCH_SIZE=448x1024 FASTFLOW_BENCH_BATCH=16 pytest benchmarks/test_bench_model.py

``fastflow bench`` prints the same comparison as a table (and more competitors on a GPU).
"""
import pytest
import torch

import fastflow
from conftest import synced
from fastflow.samples import sample_pair
from fastflow.reference import FlowNet2S as Reference

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module")
def setup(bench_cfg):
    torch.manual_seed(0)
    state = Reference().state_dict()
    x = sample_pair(bench_cfg["h"], bench_cfg["w"], bench_cfg["batch"], bench_cfg["device"])
    return state, x


def _model(cls, state, device, dtype):
    m = cls().eval()
    m.load_state_dict(state)
    return m.to(device).to(dtype)


@pytest.mark.parametrize("impl", ["reference", "fastflow"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_forward(benchmark, bench_cfg, setup, impl, precision):
    device = bench_cfg["device"]
    if device.type == "cpu" and impl == "reference" and precision == "fp16":
        pytest.skip("PyTorch's fp16 CPU convolutions are 25-40x slower than fp32: not a competitor")
    state, x = setup
    dtype = PRECISIONS[precision]
    model = _model(Reference if impl == "reference" else fastflow.FlowNet2S, state, device, dtype)
    if impl == "reference" and precision != "fp32":
        model = model.to(memory_format=torch.channels_last)  # PyTorch's fast 16-bit layout
    xin = x if impl == "fastflow" else x.to(dtype)
    benchmark.group = f"forward {precision} B={bench_cfg['batch']} {bench_cfg['h']}x{bench_cfg['w']} {device.type}"
    benchmark.extra_info["pairs"] = bench_cfg["batch"]
    with torch.no_grad():
        out = benchmark(synced(lambda: model(xin), device))
    assert out.shape == (bench_cfg["batch"], 2, bench_cfg["h"], bench_cfg["w"])
