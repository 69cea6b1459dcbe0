"""What a model caches per (device, dtype, precision): packed weights (a plan) and, per input
shape, an activation arena with its CUDA graph (an entry); and how they are released."""
from __future__ import annotations

import collections
from typing import Dict, Optional

import torch

__all__ = ["Plan", "Entry", "release_plan", "release"]


class Plan:
    """Packed weights of one forward kind (``kind``: ("cpu", dtype), or ("fused", device, precision)) made
    from the parameters as they were at ``signature`` (``FlowNet2S._weights_signature``), the dtype
    the layers compute in (``compute_dtype``), the precision name (``precision``), and the
    arenas/graphs that use them (``entries``, per (batch, H, W))."""

    def __init__(self, kind, signature: tuple, compute_dtype: torch.dtype, precision: str):
        self.kind = kind
        self.signature = signature
        self.compute_dtype = compute_dtype
        self.precision = precision
        self.params: Dict[str, object] = {}  # layer name -> packed weights (or a callable, on the CPU)
        self.entries: "collections.OrderedDict[tuple, Entry]" = collections.OrderedDict()

    def matches(self, kind, signature: tuple, compute_dtype: torch.dtype) -> bool:
        return self.kind == kind and self.signature == signature and self.compute_dtype == compute_dtype


class Entry:
    """Activation arena (and CUDA graph) for one (batch, H, W)."""

    def __init__(self):
        self.bufs: Dict[str, torch.Tensor] = {}
        self.graph = None
        self.flow2: Optional[torch.Tensor] = None
        self.last_event = None
        self.last_stream = None


def release_plan(plan: Plan) -> None:
    """_release for every arena of a plan, and the same for its packed weights (allocated on the
    stream that packed them, possibly read last by another)."""
    streams = {e.last_stream for e in plan.entries.values() if e.last_stream is not None}
    for e in plan.entries.values():
        release(e)
    for s in streams:
        for v in plan.params.values():
            for t in v if isinstance(v, tuple) else (v,):
                if isinstance(t, torch.Tensor) and t.is_cuda:
                    t.record_stream(s)


def release(e: Entry) -> None:
    """Before an arena is dropped: its memory returns to the allocator of the stream that created
    it; if another stream used it last, make the allocator wait for that stream's work."""
    if e.last_stream is not None:
        for t in e.bufs.values():
            t.record_stream(e.last_stream)
