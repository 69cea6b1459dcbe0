"""Every plan class the model's implicit-GEMM launches take on a GPU has a SIMT case.

The classes (fastflow.perf.plans: conv/deconv, tile config, split-K, several N tiles, several M
tiles, 16-byte or scalar output stores, a partial last chunk, an input read in place from a concat
buffer, channel padding) are enumerated for FlowNet2-S at 448x1024 and 384x512, batch 1 and 16,
in every precision, with the H100/H200's and the A100's multiprocessor counts. Each case below is a
small launch of the same class, run through the SIMT runtime with a NaN-poisoned output buffer, so
a kernel branch the model takes at full size is exercised on every commit (an earlier suite had no
non-split case with more than one N tile, which conv2..conv4_1, deconv4 and deconv3 take at
448x1024: an epilogue that dropped the block's column offset passed every SIMT test).
"""
import pytest

from _igemm_util import check_conv, check_deconv
from _simt_util import _require_simt, simt_marks  # noqa: F401
from fastflow import ops
from fastflow.perf.plans import IgemmLaunch, model_plan_classes, plan_class, plan_of
from fastflow.network import pad8

# (kind, precision, b, cin, cout, k, stride, h, w, num_sms, split_k, pixel_stride): split_k 0 = the
# plan's own choice; num_sms 1 makes any N > 64 launch take the 128x128 tile. Output slices start
# and end on multiples of 8 channels (16-byte stores), as every model buffer does.
CASES = [
    ("conv", "fp16", 1, 16, 72, 3, 1, 12, 12, 1, 1, None),     # cfg 0, M tiles
    ("conv", "bf16", 1, 16, 136, 3, 1, 12, 12, 1, 1, None),    # cfg 0, N and M tiles
    ("conv", "tf32", 1, 16, 136, 3, 2, 23, 23, 1, 1, 24),      # cfg 0, N and M tiles, strided input
    ("conv", "fp32", 1, 6, 64, 3, 2, 17, 17, 132, 1, None),    # cfg 1, M tiles, padded input (conv1)
    ("conv", "fp16", 1, 16, 72, 3, 1, 9, 9, 132, 1, None),     # cfg 1, N and M tiles
    ("conv", "bf16", 2, 16, 72, 3, 2, 13, 11, 132, 1, 40),     # cfg 1, N and M tiles, strided input
    ("conv", "tf32", 1, 32, 72, 3, 1, 9, 9, 132, 2, None),     # cfg 1, split-K, N and M tiles
    ("conv", "fp32", 1, 32, 72, 3, 1, 9, 9, 132, 3, 48),       # cfg 1, split-K, N and M tiles, strided
    ("conv", "fp16", 1, 32, 136, 3, 1, 6, 6, 132, 2, None),    # cfg 1, split-K, N tiles, one M tile
    ("conv", "bf16", 1, 32, 72, 3, 2, 11, 11, 132, 3, 40),     # cfg 1, split-K, N tiles, strided
    ("deconv", "fp16", 1, 20, 72, 0, 0, 12, 12, 1, 1, None),   # cfg 0, M tiles, padded input
    ("deconv", "bf16", 1, 16, 136, 0, 0, 12, 12, 1, 1, None),  # cfg 0, N and M tiles
    ("deconv", "tf32", 1, 20, 136, 0, 0, 12, 12, 1, 1, None),  # cfg 0, N and M tiles, padded input
    ("deconv", "fp32", 1, 20, 40, 0, 0, 9, 9, 132, 1, None),   # cfg 1, M tiles, padded input
    ("deconv", "fp16", 1, 16, 72, 0, 0, 9, 9, 132, 1, None),   # cfg 1, N and M tiles
    ("deconv", "bf16", 1, 20, 72, 0, 0, 9, 9, 132, 1, None),   # cfg 1, N and M tiles, padded input
    ("deconv", "tf32", 1, 32, 72, 0, 0, 9, 9, 132, 2, None),   # cfg 1, split-K, N and M tiles
    ("deconv", "fp32", 1, 36, 72, 0, 0, 9, 9, 132, 2, None),   # cfg 1, split-K, N and M tiles, padded
    ("deconv", "fp16", 1, 32, 136, 0, 0, 6, 6, 132, 2, None),  # cfg 1, split-K, N tiles, one M tile
]
BEFORE = AFTER = 8
pytestmark = simt_marks  # (the enumeration tests need only fastflow._C, but belong with the cases)


def _launch(case) -> IgemmLaunch:
    kind, prec, b, cin, cout, k, stride, h, w, _, _, pixel_stride = case
    deconv = kind == "deconv"
    cx = pad8(cin)
    return IgemmLaunch("case", deconv, b, h, w, cin, cx, pixel_stride or cx, cout, 4 if deconv else k,
                       2 if deconv else stride, BEFORE + cout + AFTER, BEFORE)


def _class(case):
    prec, sms, split_k = case[1], case[9], case[10]
    launch = _launch(case)
    return plan_class(launch, prec, plan_of(launch, prec, sms, split_k))


def test_every_model_plan_class_has_a_simt_case():
    covered = {_class(c) for c in CASES}
    missing = {}
    for cls, where in model_plan_classes():
        if cls not in covered:
            missing.setdefault(cls, where)
    assert not missing, "model plan classes without a SIMT case:\n" + "\n".join(
        f"  {cls.describe()} (e.g. {where})" for cls, where in missing.items())


def test_the_enumeration_sees_the_multi_n_tile_non_split_launches():
    """The class the old suite missed is among the model's (the enumeration is not vacuous)."""
    classes = {cls for cls, _ in model_plan_classes()}
    assert any(c.n_tiles and not c.split for c in classes)
    assert any(c.n_tiles and not c.split and c.deconv for c in classes)
    assert any(c.strided_input for c in classes) and any(c.split for c in classes)


@pytest.mark.parametrize("case", CASES)
def test_plan_class_case(case):
    kind, prec, b, cin, cout, k, stride, h, w, sms, split_k, pixel_stride = case
    plan = plan_of(_launch(case), prec, sms, split_k)
    assert (plan.splits > 1) == (split_k > 1 or (split_k == 0 and plan.splits > 1))
    with ops.simt(num_sms=sms):
        if kind == "conv":
            check_conv(prec, b, cin, cout, k, stride, h, w, "cpu", before=BEFORE, after=AFTER, split_k=split_k or None,
                       pixel_stride=pixel_stride)
        else:
            check_deconv(prec, b, cin, cout, h, w, "cpu", before=BEFORE, after=AFTER, split_k=split_k or None)
