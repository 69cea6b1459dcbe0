"""Python wrappers of the fused ops: validate, allocate, call ``fastflow._C``; one module per op.

Each op here has a reference with the same name and semantics in :mod:`fastflow.reference` (the
fused conv/deconv/flow-head ops take packed weights, their references the module's own). Tensors
may live on the CPU (C++ versions) or on a CUDA GPU (CUDA versions, launched on the current
stream). The ops are registered with ``torch.library.custom_op`` (namespace ``fastflow``, the
``<op>_op`` object of each module) with fake implementations, so ``torch.compile`` and CUDA-graph
capture treat them as opaque ops. Activations follow one convention: logical NCHW shapes in
``torch.channels_last`` memory.

Modules: :mod:`.normalize_pack`, :mod:`.upsample_flow`, :mod:`.warp`, :mod:`.flow_head`,
:mod:`.conv2d_lrelu`, :mod:`.deconv_lrelu` (one per op, named as the op, its kernel folder
csrc/ops/<op>/ and its test tests/ops/test_<op>.py); :mod:`.igemm` (what the two implicit-GEMM ops
share); :mod:`.launch` (the extension to call, the SIMT state, allocation, shared checks).

Inside ``with fastflow.ops.simt():`` the ops given CPU tensors run their CUDA kernels instead, on
the CPU, through the SIMT host runtime ``fastflow._simt`` (csrc/simt/), which checks them for
shared-memory races, uninitialised and out-of-bounds accesses, barrier mistakes and more.
"""
from ..network import conv_flops, deconv_flops
from .conv2d_lrelu import conv2d_lrelu, pack_conv_weight
from .deconv_lrelu import deconv_lrelu, pack_deconv_weight
from .flow_head import flow_head, pack_flow_head
from . import launch
from .launch import DTYPE_CODES, MEAN_SPLITS, SimtError, simt, simt_active
from .normalize_pack import launch_normalize_pack, normalize_pack
from .upsample_flow import launch_upsample_flow, upsample_flow
from .warp import warp, warp_nchw

# Module attributes of the former fastflow/ops.py: the SIMT runtime's emulated GPU.
EMULATED_SMS, SIMT_SMEM_OPTIN = launch.EMULATED_SMS, launch.SIMT_SMEM_OPTIN

__all__ = [
    "normalize_pack",
    "upsample_flow",
    "warp",
    "pack_flow_head",
    "flow_head",
    "pack_conv_weight",
    "pack_deconv_weight",
    "conv2d_lrelu",
    "deconv_lrelu",
    "conv_flops",
    "deconv_flops",
    "DTYPE_CODES",
    "MEAN_SPLITS",
    "simt",
    "simt_active",
    "SimtError",
]
