"""Dtypes, error bounds and seeded generators shared by the element-wise op tests
(tests/ops/test_normalize_pack.py, test_upsample_flow.py, test_warp.py) and the SIMT flow-head cases."""
import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Bounds (docs/design.md section 7). CPU and CUDA against the reference: fp32 1e-5; 16-bit outputs
# one rounding of each element (2^-11 / 2^-8 relative).
TOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
# SIMT cases, against an fp64 computation of the same inputs.
TOL_SIMT = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
