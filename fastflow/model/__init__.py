"""fastflow.FlowNet2S: the reference model's parameters with a fused forward.

- ``module``: the ``FlowNet2S`` module: dispatch (training and tracing run the reference forward),
  checkpoints, the cache of packed weights and arenas (``plans``).
- ``cpu``: the CPU forward (oneDNN on weights packed once; bf16 policy in ``cpu_compute_dtype``).
- ``fused``: the fused CUDA forward (fastflow kernels only, arena + CUDA graph), which also runs on
  CPU tensors through the SIMT runtime or the ops' host emulations.
"""
from ..checkpoint import CheckpointError, check_state_dict, load_checkpoint_state
from .cpu import cpu_compute_dtype, cpu_forward_description
from .module import FlowNet2S

__all__ = ["FlowNet2S", "CheckpointError", "load_checkpoint_state", "check_state_dict", "cpu_compute_dtype",
           "cpu_forward_description"]
