"""Hypothesis-driven fuzzing of every op's CPU (and, with a GPU, CUDA) path against its reference:
random shapes, strides (permuted / sliced views), values including huge flow and non-finite numbers."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import rel_err
from fastflow import ops, reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _strided(t: torch.Tensor, how: int) -> torch.Tensor:
    """The same values as ``t`` in another memory layout: 0 contiguous, 1 last-dim sliced view,
    2 channels_last-like permuted copy (4-D only), 3 a view with a larger channel stride."""
    if how == 1:
        big = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        big[..., ::2] = t
        return big[..., ::2]
    if how == 2 and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if how == 3:
        big = torch.empty(t.shape[0], t.shape[1] + 3, *t.shape[2:], dtype=t.dtype, device=t.device)
        big[:, 1 : 1 + t.shape[1]] = t
        return big[:, 1 : 1 + t.shape[1]]
    return t


@SETTINGS
@given(
    b=st.integers(1, 3), h=st.integers(1, 40), w=st.integers(1, 40), how=st.integers(0, 3),
    channels=st.sampled_from([6, 8]), dtype=st.sampled_from(DTYPES), device=st.sampled_from(DEVICES),
    seed=st.integers(0, 2**31 - 1), rgb_max=st.floats(0.5, 1000.0),
)
def test_fuzz_normalize_pack(b, h, w, how, channels, dtype, device, seed, rgb_max):
    g = torch.Generator().manual_seed(seed)
    pair = (torch.rand(b, 3, 2, h, w, generator=g) * rgb_max).to(device)
    pair = _strided(pair, how)
    got = ops.normalize_pack(pair, rgb_max, channels, dtype)
    want = reference.normalize_pack(pair, rgb_max, channels, dtype)
    # Relative to the data's scale: normalised values can all be near zero for constant images.
    scale = max(float(want.double().norm()), 1e-3 * (want.numel() ** 0.5))
    assert float((got.double() - want.double()).norm()) / scale <= TOL[dtype]


@SETTINGS
@given(
    b=st.integers(1, 3), h=st.integers(1, 24), w=st.integers(1, 24), how=st.integers(0, 3),
    dtype=st.sampled_from(DTYPES), device=st.sampled_from(DEVICES), seed=st.integers(0, 2**31 - 1),
    div=st.floats(-50, 50).filter(lambda v: abs(v) > 1e-3),
)
def test_fuzz_upsample_flow(b, h, w, how, dtype, device, seed, div):
    g = torch.Generator().manual_seed(seed)
    flow = (torch.randn(b, 2, h, w, generator=g) * 5).to(dtype).to(device)
    flow = _strided(flow, how)
    assert rel_err(ops.upsample_flow(flow, div), reference.upsample_flow(flow, div)) <= 1e-6


@SETTINGS
@given(
    b=st.integers(1, 3), c=st.integers(1, 9), h=st.integers(1, 24), w=st.integers(1, 24),
    how_x=st.integers(0, 3), how_f=st.integers(0, 3), padding=st.sampled_from(["border", "zeros"]),
    dtype=st.sampled_from(DTYPES), fdtype=st.sampled_from(DTYPES), device=st.sampled_from(DEVICES),
    seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.0, 0.5, 3.0, 30.0, 1e6]),
    n_bad=st.integers(0, 3),
)
def test_fuzz_warp(b, c, h, w, how_x, how_f, padding, dtype, fdtype, device, seed, scale, n_bad):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g).to(dtype).to(device)
    flow = (torch.randn(b, 2, h, w, generator=g) * scale).to(fdtype)
    for k in range(n_bad):  # sprinkle non-finite flow
        flow.view(-1)[(seed + 7919 * k) % flow.numel()] = [float("nan"), float("inf"), -float("inf")][k % 3]
    flow = flow.to(device)
    x, flow = _strided(x, how_x), _strided(flow, how_f)
    kw = {"return_mask": True} if padding == "zeros" else {}
    got = ops.warp(x, flow, padding, **kw)
    want = reference.warp(x, flow.float() if fdtype != torch.float32 else flow, padding, **kw)
    if kw:
        assert torch.equal(got[1], want[1])
        got, want = got[0], want[0]
    nan_got, nan_want = torch.isnan(got), torch.isnan(want)
    assert torch.equal(nan_got, nan_want)
    finite = ~nan_want
    if finite.any():
        assert rel_err(got[finite], want[finite]) <= TOL[dtype] or float((got[finite].double() - want[finite].double()).abs().max()) <= 1e-5
