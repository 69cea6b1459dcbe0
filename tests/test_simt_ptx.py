"""The SIMT runtime's PTX instructions against the PTX ISA's fragment tables, and (on a GPU) against
the hardware.

The fragment layouts below are transcribed from the PTX ISA ("Matrix Fragments for mma.m16n8k16
with floating point type", "... for mma.m16n8k8" with .tf32, "ldmatrix"): groupID = lane >> 2,
threadID_in_group = lane % 4, element i of a fragment in register i // 2 (low half first) for
16-bit types. They are written in the ISA's per-element form, independently of the runtime's
implementation (csrc/simt/warp_ops.cpp). The probes are the same CUDA kernels on both sides
(csrc/ptx_probe/ptx_probe.cu), run through the normal launcher.
"""
import struct

import numpy as np
import pytest
import torch

from _simt_util import (PROBE_CP_ASYNC, PROBE_CVT_TF32, PROBE_LDMATRIX, PROBE_MMA_BF16, PROBE_MMA_F16,
                        PROBE_MMA_TF32, _require_simt, probe, simt_marks)  # noqa: F401
from fastflow import _backend

pytestmark = simt_marks


# ---- the ISA tables -------------------------------------------------------------------------------


def a_f16_coord(lane, i):
    """(row, col) of element a_i (i in 0..7) held by `lane`, mma.m16n8k16 .f16/.bf16 A (16x16)."""
    g, t = lane >> 2, lane % 4
    row = g if (i < 2 or 4 <= i < 6) else g + 8
    col = t * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def b_f16_coord(lane, i):
    """(row=k, col=n) of element b_i (i in 0..3), mma.m16n8k16 .f16/.bf16 B (16x8)."""
    g, t = lane >> 2, lane % 4
    return t * 2 + (i & 1) + (8 if i >= 2 else 0), g


def c_coord(lane, i):
    """(row, col) of c_i / d_i (i in 0..3), f32 accumulators of both shapes (16x8)."""
    g, t = lane >> 2, lane % 4
    return (g if i < 2 else g + 8), t * 2 + (i & 1)


def a_tf32_coord(lane, i):
    """(row, col) of a_i (i in 0..3), mma.m16n8k8 .tf32 A (16x8)."""
    g, t = lane >> 2, lane % 4
    return (g if i in (0, 2) else g + 8), (t if i < 2 else t + 4)


def b_tf32_coord(lane, i):
    """(row=k, col=n) of b_i (i in 0..1), mma.m16n8k8 .tf32 B (8x8)."""
    g, t = lane >> 2, lane % 4
    return (t if i == 0 else t + 4), g


def _bits16(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "f16":
        return x.astype(np.float16).view(np.uint16).astype(np.uint32)
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint32)  # bf16: dyadic, exact


def _dyadic(rng, shape, lo=-8, hi=8, scale=0.25):
    return rng.integers(lo, hi + 1, size=shape).astype(np.float64) * scale


def _pack_mma_16bit(A, B, kind):
    a = np.zeros((32, 4), np.uint32)
    b = np.zeros((32, 2), np.uint32)
    for lane in range(32):
        for i in range(8):
            bits = _bits16(np.array([A[a_f16_coord(lane, i)]]), kind)[0]
            a[lane, i // 2] |= bits << (16 * (i % 2))
        for i in range(4):
            bits = _bits16(np.array([B[b_f16_coord(lane, i)]]), kind)[0]
            b[lane, i // 2] |= bits << (16 * (i % 2))
    return a, b


def _pack_c(C):
    c = np.zeros((32, 4), np.float32)
    for lane in range(32):
        for i in range(4):
            c[lane, i] = C[c_coord(lane, i)]
    return c


def _unpack_d(d):
    D = np.full((16, 8), np.nan)
    for lane in range(32):
        for i in range(4):
            D[c_coord(lane, i)] = d[lane, i]
    return D


def _t(x, dtype):
    return torch.from_numpy(np.ascontiguousarray(x).view(dtype))


@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_mma_m16n8k16_fragments(kind):
    rng = np.random.default_rng(7)
    A, B, C = _dyadic(rng, (16, 16)), _dyadic(rng, (16, 8)), _dyadic(rng, (16, 8), scale=1.0)
    a, b = _pack_mma_16bit(A, B, kind)
    c = _pack_c(C)
    d = probe(PROBE_MMA_F16 if kind == "f16" else PROBE_MMA_BF16, (32, 4), torch.float32,
              _t(a, np.int32), _t(b, np.int32), _t(c, np.float32)).numpy()
    np.testing.assert_array_equal(_unpack_d(d), A @ B + C)  # dyadic: exact in fp32


def test_mma_m16n8k8_tf32_fragments():
    rng = np.random.default_rng(8)
    A, B, C = _dyadic(rng, (16, 8)), _dyadic(rng, (8, 8)), _dyadic(rng, (16, 8), scale=1.0)
    a = np.zeros((32, 4), np.float32)
    b = np.zeros((32, 2), np.float32)
    for lane in range(32):
        for i in range(4):
            a[lane, i] = A[a_tf32_coord(lane, i)]
        for i in range(2):
            b[lane, i] = B[b_tf32_coord(lane, i)]
    d = probe(PROBE_MMA_TF32, (32, 4), torch.float32, _t(a, np.int32), _t(b, np.int32),
              _t(_pack_c(C), np.float32)).numpy()
    np.testing.assert_array_equal(_unpack_d(d), A @ B + C)


def test_mma_accumulates_into_c_with_mixed_signs_and_zero_rows():
    """A row of zeros gives C exactly; the identity matrix gives B (as f16) plus C."""
    rng = np.random.default_rng(9)
    A = np.zeros((16, 16))
    A[8:, 8:] = np.eye(8)
    B, C = _dyadic(rng, (16, 8)), _dyadic(rng, (16, 8), scale=2.0)
    a, b = _pack_mma_16bit(A, B, "f16")
    D = _unpack_d(probe(PROBE_MMA_F16, (32, 4), torch.float32, _t(a, np.int32), _t(b, np.int32),
                        _t(_pack_c(C), np.float32)).numpy())
    np.testing.assert_array_equal(D[:8], C[:8])
    np.testing.assert_array_equal(D[8:], B[8:] + C[8:])


def test_ldmatrix_x4_fragments():
    """Lanes 8j..8j+7 address the rows of matrix j; lane l receives row l // 4, b16 columns
    2 (l % 4) and 2 (l % 4) + 1 of matrix j in register j (lower column in the low half)."""
    rng = np.random.default_rng(10)
    image = rng.integers(0, 1 << 16, size=512, dtype=np.uint32).astype(np.uint16)  # 1 KB of b16
    rows = rng.permutation(64)[:32] * 16  # distinct 16-byte aligned row addresses
    out = probe(PROBE_LDMATRIX, (32, 4), torch.int32, _t(image.view(np.uint32).copy(), np.int32),
                _t(rows.astype(np.uint32), np.int32)).numpy().view(np.uint32)
    for lane in range(32):
        for j in range(4):
            row_addr = rows[8 * j + lane // 4]
            col = 2 * (lane % 4)
            lo, hi = image[row_addr // 2 + col], image[row_addr // 2 + col + 1]
            assert out[lane, j] == (int(hi) << 16 | int(lo)), (lane, j)


def _tf32_rna(bits: int) -> int:
    """cvt.rna.tf32.f32 from its definition: keep 10 mantissa bits, round to nearest, ties away from zero."""
    if bits & 0x7F800000 == 0x7F800000:
        return bits
    rest, kept = bits & 0x1FFF, bits & ~0x1FFF & 0xFFFFFFFF
    return (kept + 0x2000) & 0xFFFFFFFF if rest >= 0x1000 else kept


def _f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def test_cvt_rna_tf32():
    special = [1.0 + 2 ** -11, -(1.0 + 2 ** -11), 1.0 + 2 ** -11 - 2 ** -23, 1.0 + 3 * 2 ** -11, 3.4028234663852886e38,
               float("inf"), -float("inf"), 0.0, -0.0, 1e-40, -1e-40]
    bits = [_f32_bits(v) for v in special] + [0x7FC00001]
    bits += list(np.random.default_rng(11).integers(0, 1 << 32, size=500, dtype=np.uint64))
    inp = np.array(bits, dtype=np.uint32)
    got = probe(PROBE_CVT_TF32, (len(inp),), torch.int32, _t(inp, np.int32), n=len(inp)).numpy().view(np.uint32)
    want = np.array([_tf32_rna(int(b)) for b in inp], dtype=np.uint32)
    np.testing.assert_array_equal(got, want)
    assert got[0] == _f32_bits(1.0 + 2 ** -10)  # a tie rounds away from zero
    assert got[1] == _f32_bits(-(1.0 + 2 ** -10))
    assert got[2] == _f32_bits(1.0)


def test_cp_async_zero_fill():
    rng = np.random.default_rng(12)
    src = rng.integers(1, 1 << 31, size=(32, 4)).astype(np.uint32)
    valid = (rng.random(32) < 0.6).astype(np.int32)
    out = probe(PROBE_CP_ASYNC, (32, 4), torch.int32, _t(src, np.int32), _t(valid, np.int32)).numpy().view(np.uint32)
    np.testing.assert_array_equal(out, np.where(valid[:, None] != 0, src, 0))


# ---- the hardware known-answer test -----------------------------------------------------------------


def _kat_cases():
    rng = np.random.default_rng(13)
    A, B, C = _dyadic(rng, (16, 16)), _dyadic(rng, (16, 8)), _dyadic(rng, (16, 8), scale=1.0)
    cases = []
    for kind, probe_kind in (("f16", PROBE_MMA_F16), ("bf16", PROBE_MMA_BF16)):
        a, b = _pack_mma_16bit(A, B, kind)
        cases.append((f"mma {kind}", probe_kind, (32, 4), torch.float32,
                      (_t(a, np.int32), _t(b, np.int32), _t(_pack_c(C), np.float32)), 0))
    at = rng.integers(-8, 9, size=(32, 4)).astype(np.float32) / 4
    bt = rng.integers(-8, 9, size=(32, 2)).astype(np.float32) / 4
    cases.append(("mma tf32", PROBE_MMA_TF32, (32, 4), torch.float32,
                  (_t(at, np.int32), _t(bt, np.int32), _t(_pack_c(C), np.float32)), 0))
    image = rng.integers(0, 1 << 31, size=256).astype(np.uint32)
    rows = (rng.permutation(64)[:32] * 16).astype(np.uint32)
    cases.append(("ldmatrix.x4", PROBE_LDMATRIX, (32, 4), torch.int32, (_t(image, np.int32), _t(rows, np.int32), None), 0))
    bits = rng.integers(0, 1 << 32, size=256, dtype=np.uint64).astype(np.uint32)
    cases.append(("cvt.rna.tf32", PROBE_CVT_TF32, (256,), torch.int32, (_t(bits, np.int32), None, None), 256))
    src = rng.integers(1, 1 << 31, size=(32, 4)).astype(np.uint32)
    valid = (rng.random(32) < 0.5).astype(np.int32)
    cases.append(("cp.async", PROBE_CP_ASYNC, (32, 4), torch.int32, (_t(src, np.int32), _t(valid, np.int32), None), 0))
    return cases


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
@pytest.mark.parametrize("case", _kat_cases(), ids=lambda c: c[0])
def test_gpu_known_answer(case):
    """Each wrapped instruction on the GPU and through the SIMT runtime: the same bits."""
    if not _backend.cuda_compiled():
        pytest.skip("this build of fastflow has no CUDA kernels")
    name, kind, shape, dtype, (a, b, c), n = case
    gpu = probe(kind, shape, dtype, a, b, c, n=n, device="cuda")
    host = probe(kind, shape, dtype, a, b, c, n=n, device="cpu")
    assert torch.equal(gpu.view(torch.int32), host.view(torch.int32)), f"{name}: GPU and SIMT runtime differ"
