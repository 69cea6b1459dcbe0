"""fastflow.FlowNet2S: the reference model's parameters with a fused forward.

The module subclasses :class:`fastflow.reference.FlowNet2S`, so ``state_dict`` keys, shapes,
initialisation and training behaviour are identical; only the eval-mode forward differs:

- CPU: the C++ prologue (normalise + pack into channels_last), oneDNN convolutions on weights
  packed once with LeakyReLU fused, and the C++ output kernel (``flow2 * div_flow``, bilinear
  x4). float32: the reference's numbers within float32 rounding; bfloat16: bf16 convolutions;
  float16: computed in float32 (``cpu_compute_dtype``).
- CUDA: only fastflow kernels (docs/design.md section 5): prologue -> 10 implicit-GEMM convs -> decoder
  (sub-pixel deconvs and flow heads writing into the concat buffers in place) -> output kernel.
  Activations live in one arena per (batch, H, W, dtype); the network between prologue and
  output kernel is captured once per shape in a CUDA graph and replayed.

The fused forward's output carries no autograd history. Training mode runs the reference forward.
"""
from __future__ import annotations

import operator
import os
import threading
import warnings
from typing import Dict, Optional

import torch

from .. import _backend, ops
from ..checkpoint import check_state_dict, load_checkpoint_state
from ..reference import FlowNet2S as _ReferenceFlowNet2S
from ..reference import check_pair_input
from . import cpu, fused
from .plans import Entry, Plan, release_plan

__all__ = ["FlowNet2S"]

_VERSION = operator.attrgetter("_version")
_WARNED_NO_CUDA = False


def _invalidate_after_load(module, incompatible_keys) -> None:
    module.invalidate_cache()


def _tracing(inputs) -> bool:
    """True while a graph is being captured rather than run: torch.jit.trace/script, ONNX export,
    torch.compile / torch.export (Dynamo), or a tensor subclass (FakeTensor, functional or proxy
    tensors) as input."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and (compiler.is_compiling() or getattr(compiler, "is_exporting", lambda: False)()):
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    return isinstance(inputs, torch.Tensor) and type(inputs) is not torch.Tensor


class FlowNet2S(_ReferenceFlowNet2S):
    """FlowNet2-S with fastflow's fused inference forward; a drop-in for the reference module.

    Input ``(B, 3, 2, H, W)`` float RGB 0..``rgb_max`` (H, W multiples of 64; frame index on dim 2);
    eval output ``(B, 2, H, W)`` float32 flow in pixels. Precision follows the module's dtype:
    ``.half()`` / ``.bfloat16()`` run 16-bit kernels with fp32 accumulation; float32 runs TF32 when
    the ``allow_tf32`` attribute is True, strict fp32 when it is False, and while it is None (the
    default) follows ``torch.backends.cudnn.allow_tf32`` (PyTorch's default for convolutions: True);
    ``fastflow.precision.apply(model, "fp32")`` sets all of it without touching process-wide state. The input may stay float32 in every mode. On the CPU (see ``cpu_compute_dtype``):
    bfloat16 runs oneDNN's bf16 convolutions on weights packed once (AMX / AVX512-BF16 where
    present), activations bf16 channels_last; float16 computes in float32 (CPUs have no fast fp16
    convolutions; the fp16 weights widen exactly, so it is at fp32's speed and within fp16
    tolerance), as does bfloat16 where oneDNN has no bf16 support.

    Packed weights are rebuilt automatically after ``load_state_dict``, ``.to()``/``.half()``/...,
    and in-place parameter updates; after assigning a new ``nn.Parameter`` object to a submodule,
    call ``invalidate_cache()``.

    Attributes: ``use_cuda_graph`` (default True; False runs the CUDA kernels eagerly, for
    debugging) and ``max_cached_shapes`` (graphs/arenas kept per precision, default 8, LRU).
    """

    def __init__(self, rgb_max: float = 255.0, div_flow: float = 20.0):
        # Parameters are always normal tensors, even when built inside torch.inference_mode():
        # inference tensors have no version counter and refuse in-place loads after the block.
        with torch.inference_mode(False):
            super().__init__(rgb_max=rgb_max, div_flow=div_flow)
        self.use_cuda_graph = True
        self.max_cached_shapes = 8
        self.allow_tf32: Optional[bool] = None  # float32 on CUDA: None follows PyTorch's switch
        self._param_list = None
        self._plans: Dict[tuple, Plan] = {}
        self._lock = threading.RLock()
        self.register_load_state_dict_post_hook(_invalidate_after_load)

    # Caches, the lock and CUDA graphs are per process: copies and pickles start without them.
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state.update(_lock=None, _plans={}, _param_list=None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_checkpoint(cls, path, map_location="cpu", trusted: bool = False, **kwargs) -> "FlowNet2S":
        """Build a model from a FlowNet2-S checkpoint file, in eval mode on ``map_location``.

        Accepts the official ``FlowNet2-S_checkpoint.pth.tar`` (``{'state_dict', 'epoch',
        'best_EPE'}``), a bare state dict, and ``module.``-prefixed keys. Raises CheckpointError
        (a ValueError) naming missing, unexpected or mis-shaped keys.
        """
        state = load_checkpoint_state(path, trusted=trusted)
        model = cls(**kwargs)
        check_state_dict(model, state, source=os.fspath(path))
        model.load_state_dict(state)
        return model.to(map_location).eval()

    def invalidate_cache(self) -> None:
        """Drop packed weights, arenas and CUDA graphs (done automatically on load_state_dict and
        whenever a parameter changes)."""
        with self._lock:
            for plan in self._plans.values():
                release_plan(plan)
            self._plans = {}
            self._param_list = None

    def _drop_stale_plans(self, signature: tuple) -> None:
        """Plans packed from other weights (another dtype or device, or before a reload) are dead
        weight: ~155 MB of packed copies each."""
        for k in [k for k, p in self._plans.items() if p.signature != signature]:
            release_plan(self._plans.pop(k))

    def _weights_signature(self) -> tuple:
        # data_ptr catches .to()/.half(); _version catches in-place updates (copy_, optimiser steps).
        # The parameter list is cached (walking the module tree costs ~100 us a call); _apply
        # (.to, .cuda, .half, ...) and load_state_dict refresh it.
        params = self._param_list  # one read: _apply may clear it from another thread
        if params is None:
            params = self._param_list = list(self.parameters())
        try:
            versions = tuple(map(_VERSION, params))
        except RuntimeError:  # an inference tensor (load_state_dict(assign=True) inside inference_mode)
            versions = tuple(-1 if p.is_inference() else p._version for p in params)
        return versions + tuple(map(torch.Tensor.data_ptr, params))

    def _apply(self, fn, *args, **kwargs):
        self._param_list = None
        with torch.inference_mode(False):  # .to()/.half()/.cuda() inside inference_mode: normal tensors
            return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: torch.Tensor):
        if self.training or _tracing(inputs):
            # Training, and tracing / exporting / compiling (torch.jit.trace, torch.onnx.export,
            # torch.export, torch.compile, FakeTensor inputs): the plain reference forward,
            # so the captured graph is the reference's graph of standard PyTorch ops.
            return super().forward(inputs)
        check_pair_input(inputs)
        param = self.conv1[0].weight
        if inputs.device != param.device:
            raise ValueError(
                f"input is on {inputs.device} but the model is on {param.device}; move one of them "
                "(e.g. model.cuda() and inputs.cuda())"
            )
        if param.dtype not in ops.DTYPE_CODES:
            raise ValueError(f"fastflow.FlowNet2S runs float32, float16 or bfloat16 weights, not {param.dtype}")
        # Cached packed weights and arenas are created and written in place outside inference
        # mode, so they work in any mix of inference_mode / no_grad / plain calls.
        with torch.inference_mode(False), torch.no_grad():
            if inputs.device.type == "cuda":
                return self._forward_cuda(inputs)
            if inputs.device.type == "cpu":
                if ops.simt_active():  # the fused CUDA forward, its kernels run on the CPU (ops.simt)
                    return self._forward_fused(inputs, graph=False)
                return self._forward_cpu(inputs)
        raise ValueError(f"fastflow.FlowNet2S runs on CPU or CUDA, not {inputs.device}")

    # ------------------------------------------------------------------ CPU
    def _cpu_plan(self, input_shape) -> Plan:
        p = self.conv1[0].weight
        compute = cpu.cpu_compute_dtype(p.dtype)
        signature = self._weights_signature()
        plan = self._plans.get("cpu")
        kind = ("cpu", p.dtype)  # weights of this dtype, computing in ``compute``
        if plan is None or not plan.matches(kind, signature, compute):
            self._drop_stale_plans(signature)
            plan = Plan(kind, signature, compute, "cpu")
            plan.params = cpu.build_layers(self, input_shape, compute)
            self._plans["cpu"] = plan
        return plan

    def _forward_cpu(self, inputs: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = inputs.shape
        with self._lock:
            plan = self._cpu_plan((b, 6, h, w))
        return cpu.run(plan.params, inputs, self.rgb_max, self.div_flow, plan.compute_dtype)

    # ------------------------------------------------------------------ CUDA
    def _fused_plan(self, device: torch.device, dtype: torch.dtype) -> Plan:
        return fused.get_plan(self, device, dtype)

    def _make_entry(self, b: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Entry:
        return fused.make_entry(b, h, w, dtype, device)

    def _forward_cuda(self, inputs: torch.Tensor) -> torch.Tensor:
        if not _backend.cuda_compiled():
            # Installed where nvcc was missing: still give the right answer, at PyTorch's speed.
            global _WARNED_NO_CUDA
            if not _WARNED_NO_CUDA:
                warnings.warn(
                    "fastflow was built without CUDA kernels (no nvcc at install time); FlowNet2S runs the "
                    "PyTorch reference forward on the GPU. Reinstall with nvcc on PATH (or CUDA_HOME set) "
                    "for the fused kernels.", RuntimeWarning, stacklevel=3)
                _WARNED_NO_CUDA = True
            return super().forward(inputs.to(self.conv1[0].weight.dtype)).float()
        return self._forward_fused(inputs, self.use_cuda_graph)

    def _forward_fused(self, inputs: torch.Tensor, graph: bool) -> torch.Tensor:
        """The fastflow-kernels-only forward (``fastflow.model.fused.forward``)."""
        return fused.forward(self, inputs, graph)
