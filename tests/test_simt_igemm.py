"""The implicit-GEMM conv / deconv CUDA kernels (csrc/igemm.cuh) run on the CPU through the SIMT
host runtime, via the normal ops and launchers: every tile config x precision x split-K, conv and
sub-pixel deconv, channel slices, on sizes that are not multiples of any tile.

Each case checks (tests/_igemm_util.py) the written slice against an fp64 reference with the
design's tolerances, that every other channel of the NaN-poisoned buffer keeps its bits, and
(through the runtime) that no race, uninitialised or out-of-bounds access, misuse of cp.async or
barrier mistake happened. The bit-exact cases compare with the host emulation of the same tiling
(csrc/cpu/igemm.cpp) on dyadic data, where every product and partial sum is exact.
"""
import pytest
import torch

from _igemm_util import DTYPES, check_conv, check_deconv, igemm_call, igemm_plan
from _simt_util import _require_simt, simt_marks  # noqa: F401
from fastflow import _backend, ops

pytestmark = simt_marks

# (name, kind, b, cin, cout, k, stride, h, w, num_sms): sizes chosen so that the plan picks `config`.
# The K depths give 1 to 9 k tiles per block (last pipeline stage 0..3), with and without split-K.
CASES = {
    # 128x128 tile: N > 64 and (with 1 SM) at least a wave of blocks; M = 143 -> two M tiles.
    0: ("conv", 1, 16, 70, 3, 1, 11, 13, 1),
    # 64x64 tile: stride 2, odd sizes, N = 37.
    1: ("conv", 2, 24, 37, 3, 2, 9, 7, 132),
}
DECONV_CASES = {
    0: ("deconv", 1, 40, 72, 0, 0, 9, 11, 1),
    1: ("deconv", 2, 40, 20, 0, 0, 5, 6, 132),
}
PRECISIONS = ("fp16", "bf16", "tf32", "fp32")
DTYPE_CODE = {prec: ops.DTYPE_CODES[DTYPES[prec]] for prec in PRECISIONS}


def _plan(kind, b, cin, cout, k, stride, h, w, prec, sms, split_k):
    cx = (cin + 7) // 8 * 8
    return igemm_plan(kind == "deconv", b, h, w, cx, cout, k if kind == "conv" else 4, stride if kind == "conv" else 2,
                      DTYPE_CODE[prec], prec == "tf32", sms, split_k or 0)  # 0: the plan's own choice


def _params():
    out = []
    for config, case in list(CASES.items()) + [(c, d) for c, d in DECONV_CASES.items()]:
        for prec in PRECISIONS:
            if prec == "fp32" and config != 1:
                continue  # strict fp32 runs the SIMT-core kernel, 64x64 only
            for split_k in (1, 3):
                out.append(pytest.param(case, prec, split_k, config, id=f"{case[0]}-cfg{config}-{prec}-split{split_k}"))
    return out


@pytest.mark.parametrize("case, prec, split_k, config", _params())
def test_igemm_kernels(case, prec, split_k, config):
    kind, b, cin, cout, k, stride, h, w, sms = case
    plan = _plan(kind, b, cin, cout, k, stride, h, w, prec, sms, split_k)
    assert plan[0] == config, f"the case meant for tile config {config} planned config {plan[0]}"
    assert plan[4] == split_k
    with ops.simt(num_sms=sms):
        if kind == "conv":
            check_conv(prec, b, cin, cout, k, stride, h, w, "cpu", split_k=split_k)
        else:
            check_deconv(prec, b, cin, cout, h, w, "cpu", split_k=split_k)


@pytest.mark.parametrize("prec", PRECISIONS)
def test_vector_epilogue_and_automatic_split_k(prec):
    """Slice offset and width multiples of 8: the 16-byte output stores; a deep K with few tiles
    makes the plan choose split-K by itself (conv6-like layer)."""
    assert _plan("conv", 1, 256, 24, 3, 2, 5, 4, prec, 132, None)[4] > 1
    with ops.simt():
        check_conv(prec, 1, 256, 24, 3, 2, 5, 4, "cpu", before=8, after=8)


def _dyadic(shape, gen, scale):
    return torch.randint(-4, 5, shape, generator=gen).double() * scale


@pytest.mark.parametrize("kind, config, prec", [
    (kind, config, prec) for kind, config in [("conv", 0), ("conv", 1), ("deconv", 0), ("deconv", 1)]
    for prec in PRECISIONS if prec != "fp32" or config == 1])  # strict fp32: the 64x64 tile only
def test_bit_exact_against_host_emulation(kind, config, prec, monkeypatch):
    """On dyadic data every product and partial sum is exact, so the kernels through the runtime and
    the host emulation of their tiling must agree bit for bit, split-K included."""
    case = (CASES if kind == "conv" else DECONV_CASES)[config]
    _, b, cin, cout, k, stride, h, w, sms = case
    monkeypatch.setattr(ops, "EMULATED_SMS", sms)  # the emulation plans as the SIMT run below
    dt = torch.float32 if prec in ("fp32", "tf32") else {"fp16": torch.float16, "bf16": torch.bfloat16}[prec]
    gen = torch.Generator().manual_seed(config * 10 + len(prec))
    cx = (cin + 7) // 8 * 8
    x = _dyadic((b, cx, h, w), gen, 0.5).to(dt).contiguous(memory_format=torch.channels_last)
    if kind == "conv":
        wt = ops.pack_conv_weight(_dyadic((cout, cx, k, k), gen, 0.125), dt)
    else:
        wt = ops.pack_deconv_weight(_dyadic((cx, cout, 4, 4), gen, 0.125), dt)
    bias = _dyadic((cout,), gen, 0.25).to(dt)

    def run(split_k):
        if kind == "conv":
            return ops.conv2d_lrelu(x, wt, bias, stride, 0.125, allow_tf32=prec == "tf32", split_k=split_k)
        return ops.deconv_lrelu(x, wt, bias, 0.125, allow_tf32=prec == "tf32", split_k=split_k)

    emulated, emulated_split = run(None), run(2)
    with ops.simt(num_sms=sms):
        got, got_split = run(None), run(2)
    assert torch.isfinite(got).all() and got.abs().sum() > 0
    assert torch.equal(got, emulated), "SIMT run and host emulation differ"
    assert torch.equal(got_split, emulated_split), "SIMT run and host emulation differ with split-K"
    assert torch.equal(got, got_split), "split-K changed an exact result"


def test_global_bounds_check_covers_the_real_kernels():
    """Registering a tensor one element shorter than the conv reads makes the runtime stop the launch
    and name the access, the kernel and the tensors."""
    x = torch.randn(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    wt = ops.pack_conv_weight(torch.randn(8, 8, 3, 3), torch.float32)
    out = torch.zeros(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    lib = _backend.load_simt()
    with ops.simt():
        with ops._SIMT_LOCK:
            lib.configure(132, ops.SIMT_SMEM_OPTIN, 1)
            lib.set_buffers([(out.data_ptr(), out.numel() * 4, "out", True),
                             (wt.data_ptr(), wt.numel() * 4, "weight", False),
                             (x.data_ptr(), x.numel() * 4 - 4, "x", False)])
            try:
                with pytest.raises(ops.SimtError, match=r"global memory out of bounds: read of .* by kernel "
                                                        r"igemm_kernel<1, .*block \(0,0,0\), thread \d+ .*`x`"):
                    call = igemm_call(lib, x=x.data_ptr(), height=5, width=6, weight=wt.data_ptr(),
                                      out=out.data_ptr(), slope=0.1)
                    lib.conv2d_lrelu(call, 0, 0)
            finally:
                lib.set_buffers([])
