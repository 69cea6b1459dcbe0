"""Proof that the SIMT runtime's checks fire: fixture kernels (csrc/simt/fixtures.cu), each run in
its correct version (no report, the stated result) and with one classic bug (a SimtError naming
the problem, the kernel, the block, the thread and the address)."""
import numpy as np
import pytest
import torch

from _igemm_util import igemm_call
from _simt_util import _require_simt, simt_marks  # noqa: F401
from fastflow import _backend, ops
from fastflow.ops import launch

pytestmark = simt_marks

N = 128
LANE = np.arange(32)


def _tf32(x):
    bits = x.astype(np.float32).view(np.uint32).astype(np.int64)
    kept = bits & 0xFFFFE000
    return np.where(bits & 0x1FFF >= 0x1000, kept + 0x2000, kept).astype(np.uint32).view(np.float32)


def _mma_tf32_expected(x):
    """D = A B of the tf32_unrounded fixture (A fragment j of lane l = x[4l + j], B fragment j =
    x[2l + j]), laid out as the fixture writes it, via the ISA tables of test_simt_ptx."""
    from test_simt_ptx import a_tf32_coord, b_tf32_coord, c_coord

    A, B = np.zeros((16, 8)), np.zeros((8, 8))
    xt = _tf32(x).astype(np.float64)
    for lane in range(32):
        for i in range(4):
            A[a_tf32_coord(lane, i)] = xt[4 * lane + i]
        for i in range(2):
            B[b_tf32_coord(lane, i)] = xt[2 * lane + i]
    D = A @ B
    out = x.astype(np.float64).copy()
    for lane in range(32):
        for i in range(4):
            out[4 * lane + i] = D[c_coord(lane, i)]
    return out


def _ldmatrix_expected(x):
    out = x.copy()
    for lane in range(32):
        for j in range(4):
            out[4 * lane + j] = x[4 * (8 * j + lane // 4) + lane % 4]
    return out


t = np.arange(N)
# name: (correct result from x, the report the bug must produce)
FIXTURES = {
    "missing_barrier": (lambda x: np.roll(x, -1), r"shared-memory race|uninitialised shared memory"),
    "race": (lambda x: x[t & ~1] + x[t | 1], r"shared-memory race: .* writes shared address \d+ \(dynamic shared "
                                               r"memory byte \d+ of 512\) also written by thread \d+"),
    "oob_shared": (lambda x: x[::-1], r"shared memory out of bounds: write of 4 bytes at shared address \d+ "
                                      r"\(0 bytes past the end of the 512 bytes of dynamic shared memory\)"),
    "oob_global": (lambda x: 3 * x, r"global memory out of bounds: write of 4 bytes at 0x[0-9a-f]+ by .*`out` "
                                    r"\[0x[0-9a-f]+, 0x[0-9a-f]+\) \(0 bytes past its end\)"),
    "missing_wait": (lambda x: x[(t + 4) % N], r"read of a cp.async destination before the cp.async.wait_group"),
    "pending_group": (lambda x: x, r"exited with 1 committed cp.async group\(s\) that no cp.async.wait_group retired"),
    "uninit": (lambda x: x[t ^ 1], r"read of uninitialised shared memory .* shared address \d+ "
                                   r"\(dynamic shared memory byte \d+ of 512\)"),
    "barrier_divergence": (lambda x: x[::-1], r"barrier divergence: threads of one block wait at different "
                                              r"__syncthreads: .*csrc/simt/fixtures.cu:\d+, thread 32 at "
                                              r"csrc/simt/fixtures.cu:\d+"),
    "barrier_after_exit": (lambda x: np.where(t < N // 2, x[::-1], 0), r"barrier divergence: __syncthreads at "
                                                                       r"csrc/simt/fixtures.cu:\d+ reached after 64 "
                                                                       r"thread\(s\) of the block exited"),
    "shuffle_skipped": (lambda x: x[t ^ 1], r"deadlock in kernel shuffle_skipped_kernel, block \(0,0,0\): no thread "
                                            r"can proceed \(64 at warp collective shfl.sync.bfly, 64 exited"),
    "misaligned_vector": (lambda x: x, r"misaligned 16-byte vector read at global address"),
    "misaligned_cp_async": (lambda x: x, r"misaligned cp.async source: 16-byte copy from a global address not "
                                         r"16-byte aligned, by kernel misaligned_cp_async_kernel, block \(0,0,0\), "
                                         r"thread 0"),
    "misaligned_ldmatrix": (_ldmatrix_expected, r"misaligned ldmatrix row address: row at shared address \d+ \(must "
                                                r"be 16-byte aligned\), lane 0"),
    "big_smem": (lambda x: x, r"65536 bytes of dynamic shared memory, more than 48 KB, without "
                              r"cudaFuncSetAttribute\(cudaFuncAttributeMaxDynamicSharedMemorySize\)"),
    "tf32_unrounded": (_mma_tf32_expected, r"tf32 mma operand not rounded to tf32"),
    "readonly_write": (lambda x: 2 * x, r"write to read-only input `in` \(byte 0 of 512\)"),
}
# Findings inside a kernel also name it, the block and the thread.
LAUNCH_LEVEL = {"big_smem"}


def _run(name, bug, x):
    out = np.full(N, np.nan, np.float32)
    lib = _backend.load_simt()
    with launch.SIMT_LOCK:
        try:
            lib.run_fixture(name, bug, x.ctypes.data, out.ctypes.data, N)
        finally:
            lib.set_buffers([])
    return out


def test_every_fixture_is_tested():
    assert sorted(_backend.load_simt().fixture_names()) == sorted(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_correct_version_runs_clean(name):
    x = np.random.default_rng(abs(hash(name)) % 2**32).standard_normal(N).astype(np.float32)
    out = _run(name, False, x)
    want, _ = FIXTURES[name]
    np.testing.assert_allclose(out, want(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_bug_is_reported(name):
    x = np.random.default_rng(1).standard_normal(N).astype(np.float32)
    _, pattern = FIXTURES[name]
    with pytest.raises(ops.SimtError, match=pattern) as info:
        _run(name, True, x)
    msg = str(info.value)
    assert f"_kernel" in msg
    if name not in LAUNCH_LEVEL:
        assert "SIMT check failed in kernel " in msg and "block (0,0,0)" in msg
        if name not in ("shuffle_skipped",):
            assert "thread " in msg


def test_op_level_error_names_op_and_source_line():
    """Through an op (here a conv whose input tensor is registered one element short), the error
    starts with the op's name and, where addr2line exists, gives the kernel source line."""
    x = torch.randn(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    wt = ops.pack_conv_weight(torch.randn(8, 8, 3, 3), torch.float32)
    out = torch.zeros(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    short_x = x.permute(0, 2, 3, 1).reshape(-1)[:-1]
    with ops.simt(), pytest.raises(ops.SimtError) as info:
        with launch.kernels("conv2d_lrelu", x, {"x": short_x, "weight": wt}, {"out": out}) as lib:
            call = igemm_call(lib, x=x.data_ptr(), height=5, width=6, weight=wt.data_ptr(), out=out.data_ptr(),
                              slope=0.1)
            lib.conv2d_lrelu(call, lib.igemm_plan(call, False), 0, 0)
    msg = str(info.value)
    assert msg.startswith("fastflow.conv2d_lrelu: SIMT check failed in kernel igemm_kernel<1, MathMode::kF32Simt>")
    assert "global memory out of bounds: read of 16 bytes" in msg and "bytes past it)" in msg and "`x` [0x" in msg
    assert "block (0,0,0), thread " in msg
    import shutil
    if shutil.which("addr2line"):
        assert "[at csrc/" in msg, msg


def test_simt_arguments_are_validated():
    with pytest.raises(ValueError, match="num_sms"):
        with ops.simt(num_sms=0):
            pass
    with pytest.raises(ValueError, match="threads"):
        with ops.simt(threads=0):
            pass
    assert not ops.simt_active()
    with ops.simt():
        assert ops.simt_active()
    assert not ops.simt_active()
