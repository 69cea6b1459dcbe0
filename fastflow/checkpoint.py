"""Reading FlowNet2-S checkpoint files and checking a state dict against the model.

``load_checkpoint_state`` reads the official ``FlowNet2-S_checkpoint.pth.tar``, a bare state dict or
``module.``-prefixed keys, safely (``torch.load(weights_only=True)``); ``check_state_dict`` names
missing, unexpected and mis-shaped keys and recognises other FlowNet variants. Every failure is a
:class:`CheckpointError` (a ValueError) in fastflow's words, not torch.load's.
(:meth:`fastflow.FlowNet2S.from_checkpoint` uses both; ``fastflow info`` too.)
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import torch

__all__ = ["CheckpointError", "load_checkpoint_state", "check_state_dict", "describe_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file that is not a FlowNet2-S checkpoint, or does not fit this model."""


def _describe_foreign(keys) -> Optional[str]:
    """A hint when the state dict is another FlowNet variant."""
    ks = set(keys)
    if any(k.startswith(("flownetc.", "flownets_1.", "flownets_2.", "flownets_d.", "flownetfusion.")) for k in ks):
        return "it looks like a full FlowNet2 (FlowNet2/-CS/-CSS) checkpoint, not FlowNet2-S"
    if "conv_redir.0.weight" in ks or "conv_redir.weight" in ks:
        return "it looks like a FlowNet2-C / FlowNetC checkpoint (it has conv_redir), not FlowNet2-S"
    if "conv1.weight" in ks and "conv1.0.weight" not in ks:
        return "its layer names (conv1.weight) are not flownet2-pytorch's (conv1.0.weight): another FlowNetS port?"
    return None


_FILE_KINDS = (  # (magic prefix, what the file is) for files that are plainly not checkpoints
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"RIFF", "a RIFF (WebP/WAV/AVI) file"),
)


def _shorten(text: str, limit: int = 160) -> str:
    """``text`` cut at a word boundary to about ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " ..."


def _unreadable_checkpoint(path: str, e: BaseException, trusted: bool) -> str:
    """Why ``path`` could not be loaded, in fastflow's words (not torch.load's advice)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as oe:
        return f"cannot read checkpoint {path}: {oe.strerror or oe}"
    what = f"cannot read {path} as a PyTorch checkpoint"
    if size == 0:
        return f"{what}: the file is empty (0 bytes); download it again"
    for magic, kind in _FILE_KINDS:
        if head.startswith(magic):
            return f"{what}: it is {kind}"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return (f"{what}: it is an HTML page ({size} bytes), a failed download (Google Drive answers large "
                "files with a confirmation page); download FlowNet2-S_checkpoint.pth.tar again from a browser")
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and text.strip():
            start = text.strip().splitlines()[0][:40]
            return f"{what}: it is a text file ({size} bytes, starting {start!r}), not a checkpoint"
    msg = str(e).strip() or type(e).__name__
    if "WeightsUnpickler error:" in msg:
        reason = msg.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].split(". ")[0]
        if "Unsupported global" in reason:
            hint = ("; if you trust this file, FlowNet2S.from_checkpoint(path, trusted=True) loads it with full "
                    "unpickling") if not trusted else ""
            return f"{what}: it holds Python objects besides tensors, which safe loading refuses ({_shorten(reason, 120)}){hint}"
        return f"{what}: {size} bytes of data that is not PyTorch's, or is truncated ({_shorten(reason, 120)})"
    reason = _shorten(msg.splitlines()[0].split(". ")[0])
    if reason.strip().isdigit():  # torch's unpickler names only an opcode byte: meaningless to a user
        reason = "neither a zip archive nor a pickle"
    if head.startswith(b"PK\x03\x04"):
        return f"{what}: a zip archive torch cannot open, probably truncated ({size} bytes): {reason}"
    return f"{what} ({size} bytes): {reason}; it may be truncated or not a .pth/.pth.tar file"


def load_checkpoint_state(path, trusted: bool = False) -> Dict[str, torch.Tensor]:
    """Read a FlowNet2-S checkpoint file into a plain state dict (CPU tensors).

    Accepts the official ``FlowNet2-S_checkpoint.pth.tar`` layout (``{'state_dict', 'epoch',
    'best_EPE'}``), a bare state dict, and keys with a ``module.`` prefix (DataParallel). Files are
    read with ``torch.load(weights_only=True)``; ``trusted=True`` allows arbitrary pickles (only for
    files you trust). Raises FileNotFoundError or CheckpointError naming what is wrong.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
    try:
        if trusted:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            import numpy as np

            # The official file stores best_EPE as a numpy scalar (pickled by numpy 1 under the
            # name numpy.core.multiarray.scalar): allow exactly those types, under both names.
            try:
                from numpy._core.multiarray import scalar as np_scalar
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import scalar as np_scalar
            safe = [np.dtype, np_scalar, (np_scalar, "numpy.core.multiarray.scalar"),
                    (np_scalar, "numpy._core.multiarray.scalar")]
            safe += [type(np.dtype(t)) for t in (np.float32, np.float64, np.int64)]
            with torch.serialization.safe_globals(safe):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / foreign files
        raise CheckpointError(_unreadable_checkpoint(path, e, trusted)) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state = obj["state_dict"]
    elif isinstance(obj, dict):
        state = obj
    else:
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict or a dict with a 'state_dict' entry"
        )
    if not state:
        raise CheckpointError(f"{path} holds an empty state dict")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {bad[:5]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_state_dict(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source} does not fit FlowNet2-S"]
    hint = _describe_foreign(state.keys())
    if hint is None and "conv1.0.weight" in state and state["conv1.0.weight"].dim() == 4:
        cin = state["conv1.0.weight"].shape[1]
        if cin != 6:
            hint = f"its conv1 takes {cin} input channels (FlowNet2-S takes 6: two RGB frames)"
    if hint:
        parts.append(hint)
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        parts.append(
            f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    if shapes:
        parts.append(f"mis-shaped ({len(shapes)}): {'; '.join(shapes[:6])}{' ...' if len(shapes) > 6 else ''}")
    raise CheckpointError("; ".join(parts))


def describe_checkpoint(path: str) -> dict:
    """What a checkpoint file holds: size, sha256, tensors, parameters, dtypes, and whether it is a
    FlowNet2-S state dict (raises CheckpointError naming the problem when it is not)."""
    import hashlib

    from .model import FlowNet2S

    state = load_checkpoint_state(path)
    check_state_dict(FlowNet2S(), state, source=path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    return {
        "path": os.path.abspath(path),
        "bytes": os.path.getsize(path),
        "sha256": digest.hexdigest(),
        "tensors": len(state),
        "parameters": sum(v.numel() for v in state.values()),
        "dtypes": dtypes,
        "model": "FlowNet2-S (flownet2-pytorch FlowNet2S, batchNorm=False): loads into fastflow.FlowNet2S",
    }
