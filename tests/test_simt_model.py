"""The whole fused CUDA forward of fastflow.FlowNet2S run on the CPU through the SIMT host runtime:
``with fastflow.ops.simt(): model(pair)`` takes the CUDA path's orchestration (activation arena,
concat buffers written in place through channel slices, encoder convs reading slices, flow heads
writing their upsampled flow into the next concat buffer) with every kernel the GPU would run, and
checks each launch. The arena is NaN-poisoned first (concat padding channels stay zero, as the
model requires), so anything a kernel fails to write shows in the output.
"""
import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err
from _simt_util import _require_simt, simt_marks  # noqa: F401
from fastflow import network
from fastflow import ops
from fastflow.precision import torch_tf32 as tf32_mode
from fastflow.reference import FlowNet2S as Reference

pytestmark = simt_marks

H, W = 64, 128


@pytest.fixture(scope="module")
def pair():
    return motorcycle_pair(H, W, 1)


@pytest.fixture(scope="module")
def ref64(weights, pair):
    r = Reference().eval()
    r.load_state_dict(weights)
    with torch.no_grad():
        return r.double()(pair.double())


def _poisoned_model(weights, dtype, x):
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    m = m.to(dtype)
    b, _, _, h, w = x.shape
    plan = m._fused_plan(x.device, dtype)
    entry = m._make_entry(b, h, w, dtype, x.device)
    written = {c.name: c.channels for c in network.CONCATS}
    for name, buf in entry.bufs.items():
        buf[:, : written.get(name, buf.shape[1])].fill_(float("nan"))
    plan.entries[(b, h, w)] = entry
    return m


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_fused_forward_fp32_tf32(weights, pair, ref64, precision):
    m = _poisoned_model(weights, torch.float32, pair)
    with tf32_mode(precision == "tf32"), ops.simt():
        got = m(pair)
    assert m._plans[("fused", pair.device, precision)].entries  # the fused CUDA path ran
    err = rel_err(got, ref64)
    print(f"SIMT fused forward {precision} {H}x{W}: rel err {err:.2e}")
    assert got.shape == ref64.shape and torch.isfinite(got).all()
    assert err <= (1e-5 if precision == "fp32" else 5e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_fused_forward_16bit(weights, pair, ref64, dtype):
    """Error against the fp64 reference at most twice PyTorch's own in that precision
    (docs/design.md section 7)."""
    m = _poisoned_model(weights, dtype, pair)
    with ops.simt():
        got = m(pair)
    assert torch.isfinite(got).all()
    err = rel_err(got, ref64)
    r16 = Reference().eval()
    r16.load_state_dict(weights)
    try:
        with torch.no_grad():
            theirs = rel_err(r16.to(dtype)(pair.to(dtype)).float(), ref64)
    except RuntimeError:  # no CPU 16-bit convolution in this PyTorch: the host emulation's error instead
        emulated = fastflow.FlowNet2S().eval()
        emulated.load_state_dict(weights)
        with torch.no_grad():
            theirs = rel_err(emulated.to(dtype)._forward_fused(pair, graph=False), ref64)
    print(f"SIMT fused forward {dtype} {H}x{W}: rel err {err:.2e}, PyTorch's own {theirs:.2e}")
    assert err <= 2 * theirs
