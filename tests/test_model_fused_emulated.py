"""The fused CUDA forward's orchestration, run on the CPU: the same arena, concat slices, packed
weights and op sequence, through the ops' CPU versions (conv/deconv as host emulations of the CUDA
kernels' tiling and split-K). Checks everything about the fused forward except the GPU itself."""
import pytest
import torch

import fastflow
from conftest import motorcycle_pair, rel_err
from fastflow.precision import torch_tf32 as tf32
from fastflow.reference import FlowNet2S as Reference




@pytest.fixture(scope="module")
def ref(weights):
    r = Reference().eval()
    r.load_state_dict(weights)
    return r


def _fused(weights, dtype=torch.float32):
    m = fastflow.FlowNet2S().eval()
    m.load_state_dict(weights)
    return m.to(dtype)


@pytest.mark.parametrize("batch, h, w", [(2, 64, 128), (1, 128, 64)])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_fused_fp32_tf32(weights, ref, batch, h, w, precision):
    x = motorcycle_pair(h, w, batch)
    model = _fused(weights)
    with torch.no_grad(), tf32(precision == "tf32"):
        got = model._forward_fused(x, graph=False)
        want = ref(x)
    err = rel_err(got, want)
    print(f"emulated fused {precision} B={batch} {h}x{w}: rel err {err:.2e}")
    assert got.shape == want.shape
    assert err <= (1e-5 if precision == "fp32" else 5e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_16bit(weights, ref, dtype):
    """Error against an fp64 reference at most twice PyTorch's own 16-bit error
    (docs/design.md section 7)."""
    x = motorcycle_pair(64, 128, 1)
    r64 = Reference().eval()
    r64.load_state_dict(weights)
    r64 = r64.double()
    with torch.no_grad():
        want = r64(x.double())
        got = _fused(weights, dtype)._forward_fused(x, graph=False)
        try:
            r16 = Reference().eval()
            r16.load_state_dict(weights)
            theirs = rel_err(r16.to(dtype)(x.to(dtype)).float(), want)
        except RuntimeError as e:  # a CPU build without that 16-bit conv
            pytest.skip(f"PyTorch has no CPU {dtype} convolution here: {e}")
    err = rel_err(got, want)
    print(f"emulated fused {dtype}: rel err {err:.2e}, PyTorch's own {theirs:.2e}")
    assert err <= 2 * theirs


def test_fused_arena_reuse_shapes_and_reload(weights, ref):
    model = fastflow.FlowNet2S().eval()
    xs = [motorcycle_pair(64, 64, 1), motorcycle_pair(64, 128, 2)]
    with torch.no_grad(), tf32(False):
        model._forward_fused(xs[0], graph=False)  # random weights first
        model.load_state_dict(weights)  # must invalidate the packed weights
        for _ in range(2):
            for x in xs:
                assert rel_err(model._forward_fused(x, graph=False), ref(x)) <= 1e-5
    model.max_cached_shapes = 1
    with torch.no_grad(), tf32(False):
        for x in xs:
            assert rel_err(model._forward_fused(x, graph=False), ref(x)) <= 1e-5
    assert all(len(p.entries) <= 1 for p in model._plans.values())


def test_concat_padding_channels_stay_zero(weights):
    model = _fused(weights)
    x = motorcycle_pair(64, 64, 1)
    with torch.no_grad():
        model._forward_fused(x, graph=False)
    plan = next(p for k, p in model._plans.items() if isinstance(k, tuple))
    entry = next(iter(plan.entries.values()))
    for name, used in (("concat5", 1026), ("concat4", 770), ("concat3", 386), ("concat2", 194)):
        buf = entry.bufs[name]
        assert buf.shape[1] % 8 == 0 and torch.all(buf[:, used:] == 0), name
        assert torch.isfinite(buf).all(), name
