"""The fused CUDA forward against the reference (skip without a GPU).

Tolerances (docs/design.md section 7): strict fp32 1e-5 relative, TF32 5e-3; fp16/bf16: error against an
fp64 reference at most twice PyTorch's own fp16/bf16 error (eager, channels_last) on the same input.
Inputs are real photographs (scikit-image's motorcycle stereo pair).
"""
import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err, requires_cuda
from fastflow.precision import torch_tf32 as tf32
from fastflow.reference import FlowNet2S as Reference

pytestmark = requires_cuda
SIZES = [(1, 384, 512), (3, 384, 512), (1, 448, 1024), (3, 448, 1024)]




@pytest.fixture(scope="module")
def refs(weights):
    """fp64 oracle and PyTorch's own 16-bit models, built once."""
    r64 = Reference().cuda().eval()
    r64.load_state_dict(weights)
    r64 = r64.double()
    torch_half = {}
    for dt in (torch.float16, torch.bfloat16):
        m = Reference().cuda().eval()
        m.load_state_dict(weights)
        torch_half[dt] = m.to(dt).to(memory_format=torch.channels_last)
    return r64, torch_half


@pytest.fixture(scope="module")
def pairs():
    return {s: motorcycle_pair(s[1], s[2], s[0], "cuda") for s in SIZES}


def _fast(weights, dtype, graph):
    m = fastflow.FlowNet2S().cuda().eval()
    m.load_state_dict(weights)
    m = m.to(dtype)
    m.use_cuda_graph = graph
    return m


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("graph", [True, False])
def test_fused_forward_matches_reference(weights, refs, pairs, size, precision, graph):
    r64, torch_half = refs
    x = pairs[size]
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = _fast(weights, dtype, graph)
    with torch.no_grad(), tf32(precision == "tf32"):
        want = r64(x.double())
        out = model(x)
        out2 = model(x)  # second call: replay (graph) / arena reuse
    assert out.shape == (size[0], 2, size[1], size[2]) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    err = rel_err(out, want)
    if precision in ("fp16", "bf16"):
        with torch.no_grad():
            theirs = rel_err(torch_half[dtype](x.to(dtype)).float(), want)
        bound = 2 * theirs
    else:
        bound = 1e-5 if precision == "fp32" else 5e-3
    print(f"fused {precision} graph={graph} B={size[0]} {size[1]}x{size[2]}: rel err {err:.3e} (bound {bound:.3e})")
    assert err <= bound
    torch.testing.assert_close(out2, out, rtol=0, atol=0)  # deterministic


def test_output_is_callers_own(weights, pairs):
    model = _fast(weights, torch.float16, True)
    a, b = pairs[(1, 384, 512)], pairs[(3, 384, 512)][:1].flip(-1).contiguous()
    with torch.no_grad():
        first = model(a)
        keep = first.clone()
        second = model(b)
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(first, keep, rtol=0, atol=0)


def test_two_shapes_alternate_through_graph_cache(weights, pairs):
    model = _fast(weights, torch.float16, True)
    xs = [pairs[(1, 384, 512)], pairs[(1, 448, 1024)], pairs[(3, 384, 512)]]
    with torch.no_grad():
        want = [model(x).clone() for x in xs]
        for k in range(4):
            for x, w in zip(xs, want):
                torch.testing.assert_close(model(x), w, rtol=0, atol=0)
    model.max_cached_shapes = 1
    with torch.no_grad():
        for x, w in zip(xs, want):  # evicting and recapturing gives the same answers
            torch.testing.assert_close(model(x), w, rtol=0, atol=0)
    assert all(len(p.entries) <= 1 for p in model._plans.values())


@pytest.mark.parametrize("graph", [True, False])
def test_state_dict_loaded_after_first_forward_is_used(weights, refs, pairs, graph):
    model = fastflow.FlowNet2S().cuda().eval().half()
    model.use_cuda_graph = graph
    x = pairs[(1, 384, 512)]
    with torch.no_grad():
        before = model(x).clone()
        model.load_state_dict(weights)
        after = model(x)
        fresh = _fast(weights, torch.float16, graph)(x)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)
    assert rel_err(before, after) > 1e-2
    with torch.no_grad():
        model.predict_flow2.bias.add_(1.0)  # an in-place change is seen too
        changed = model(x)
    assert rel_err(changed, after) > 1e-3


def test_precision_switch_follows_allow_tf32(weights, pairs):
    model = _fast(weights, torch.float32, True)
    x = pairs[(1, 384, 512)]
    with torch.no_grad():
        with tf32(False):
            strict = model(x).clone()
        with tf32(True):
            fast = model(x).clone()
    assert {p[2] for p in model._plans if isinstance(p, tuple)} == {"fp32", "tf32"}
    assert rel_err(fast, strict) < 5e-3


def test_peak_memory_batch1_fp16(weights, pairs):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model = _fast(weights, torch.float16, True)
    with torch.no_grad():
        model(pairs[(1, 448, 1024)])
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    print(f"peak GPU memory, batch 1 fp16 448x1024 (weights included): {peak:.0f} MB")
    # fp16 weights (77 MB) + packed copies (77 MB) + arena and graph pool (~60 MB at this size):
    # a leak or a duplicated arena shows as far more.
    assert peak < 400
