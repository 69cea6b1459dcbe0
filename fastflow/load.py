"""Getting a ready model: which device, which checkpoint, which precision. The library function
behind every command (``fastflow flow``, ``video``, ``extract``, ``validate``, ``bench``) and the
Python API (``fastflow.load_model``).

Errors are Python exceptions naming the problem and the fix (ValueError for a bad device or
precision, FileNotFoundError for a missing checkpoint, :class:`fastflow.CheckpointError` for a file
that is not a FlowNet2-S checkpoint); the command line prints them as one line.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import torch

from . import precision as _precision
from .checkpoint import CheckpointError

__all__ = ["CHECKPOINT_HELP", "RANDOM_WEIGHTS_SEED", "resolve_device", "find_checkpoint", "load_model"]

CHECKPOINT_HELP = (
    "fastflow ships no weights. Get the official FlowNet2-S checkpoint (FlowNet2-S_checkpoint.pth.tar, "
    "linked from the README of NVIDIA's flownet2-pytorch) and pass --checkpoint PATH or set FASTFLOW_CHECKPOINT "
    "(or --random-weights to try the commands: the flow is then meaningless)"
)

# Random weights are drawn from a fixed seed, so two runs with --random-weights agree.
RANDOM_WEIGHTS_SEED = 0


def resolve_device(name: Union[None, str, torch.device] = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA if PyTorch sees a GPU, else the CPU. Otherwise ``cpu``,
    ``cuda`` or ``cuda:N``, checked against what PyTorch sees (ValueError naming the problem)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(name)!r}: fastflow runs on cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(name)!r} asked for, but PyTorch sees no CUDA GPU")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(name)!r}: PyTorch sees {torch.cuda.device_count()} GPU(s)")
    return dev


def find_checkpoint(path: Union[None, str, os.PathLike] = None) -> str:
    """``path``, else ``$FASTFLOW_CHECKPOINT``, checked to be a file: FileNotFoundError (with how to
    get the weights) when neither is given or the file is missing, CheckpointError for a folder."""
    path = os.fspath(path) if path is not None else os.environ.get("FASTFLOW_CHECKPOINT")
    if not path:
        raise FileNotFoundError("no checkpoint given. " + CHECKPOINT_HELP)
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_model(checkpoint: Union[None, str, os.PathLike] = None, device: Union[None, str, torch.device] = None,
               precision: Optional[str] = None, *, random_weights: bool = False, trusted: bool = False):
    """A :class:`fastflow.FlowNet2S` in eval mode on ``device`` (see :func:`resolve_device`) in
    ``precision`` (``fp32 | tf32 | fp16 | bf16``; None: tf32 on CUDA, fp32 on a CPU; see
    :mod:`fastflow.precision`), with the weights of ``checkpoint`` (see :func:`find_checkpoint`), or
    with ``random_weights=True`` PyTorch's default initialisation drawn from a fixed seed (for
    trying things out: the flow is meaningless). The precision is stored on the model, not in
    PyTorch's process-wide switches."""
    from .model import FlowNet2S

    dev = resolve_device(device)
    name = _precision.resolve(precision, dev)
    if random_weights:
        if checkpoint is not None:
            raise ValueError("give a checkpoint or random_weights=True, not both")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = FlowNet2S()
        model = model.to(dev).eval()
    else:
        model = FlowNet2S.from_checkpoint(find_checkpoint(checkpoint), map_location=dev, trusted=trusted)
    return _precision.apply(model, name)
