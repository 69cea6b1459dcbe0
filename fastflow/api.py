"""``fastflow.estimate_flow``: flow between two images of any size."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .model import FlowNet2S as _Fused  # takes float32 input in every precision

__all__ = ["estimate_flow", "network_size", "to_image_tensor"]


def network_size(height: int, width: int) -> Tuple[int, int]:
    """The size the network runs at: height and width rounded to the nearest multiple of 64 (halves
    round up; at least 64)."""
    return max(64, (height + 32) // 64 * 64), max(64, (width + 32) // 64 * 64)


def to_image_tensor(img, name: str = "image") -> Tuple[torch.Tensor, str]:
    """Convert one image or a batch to a float32 ``(B, 3, H, W)`` tensor in 0..255 (the network's input).

    Layouts: ``(H, W, 3)`` / ``(B, H, W, 3)`` and ``(3, H, W)`` / ``(B, 3, H, W)`` numpy arrays or
    tensors (channels-first when the last dim is not 3), ``(H, W)`` greyscale arrays or tensors (repeated to
    RGB), and PIL images in any mode (EXIF orientation applied, 16-bit kept; see
    ``fastflow.images.pil_to_array``). Values follow ``fastflow.images.to_float255``: uint8 0..255,
    uint16 0..65535, float 0..1. Returns the tensor and the kind of the input ("numpy", "pil",
    "tensor", with "-batch" appended for batches).
    """
    from .images import pil_to_array, to_float255

    kind = "tensor"
    if not isinstance(img, (np.ndarray, torch.Tensor)):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None
        if Image is not None and isinstance(img, Image.Image):
            img, kind = pil_to_array(img, name), "pil"
        else:
            raise TypeError(f"{name}: expected a numpy array, a PIL image or a torch.Tensor, got {type(img).__name__}")
    if isinstance(img, np.ndarray):
        kind = "pil" if kind == "pil" else "numpy"
        if img.dtype.byteorder not in ("=", "|"):
            img = img.astype(img.dtype.newbyteorder("="))
        t = torch.from_numpy(np.ascontiguousarray(img) if img.flags.writeable else img.copy())
    else:
        t = img
    shape = tuple(t.shape)
    if t.dim() == 2:  # greyscale (H, W)
        t = t.unsqueeze(-1).expand(*t.shape, 3)
    if t.dim() not in (3, 4):
        raise ValueError(f"{name}: expected an (H, W, 3) image or a (B, H, W, 3) batch, got shape {shape}")
    batch = t.dim() == 4
    if t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2) if batch else t.permute(2, 0, 1)
    elif t.shape[-3] == 3 and kind != "pil":  # channels-first (3, H, W) / (B, 3, H, W), numpy or tensor
        pass
    else:
        raise ValueError(
            f"{name}: expected 3 colour channels (H, W, 3), got shape {shape}; pass (H, W) for greyscale, "
            "drop the alpha channel of RGBA (img[..., :3]), or pass a PIL image"
        )
    if not batch:
        t = t.unsqueeze(0)
    if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
        raise ValueError(f"{name}: empty image or batch (shape {shape})")
    return to_float255(t, name), kind + ("-batch" if batch else "")


def estimate_flow(model: torch.nn.Module, img1, img2):
    """Optical flow from ``img1`` to ``img2``, any size: ``(H, W, 2)`` (u, v) in pixels.

    ``img1``, ``img2``: ``(H, W, 3)`` RGB images as numpy arrays, PIL images or tensors (CPU or
    CUDA; channels-first ``(3, H, W)`` arrays and tensors too; ``(H, W)`` greyscale), or batches
    ``(B, H, W, 3)`` / ``(B, 3, H, W)``, which give ``(B, H, W, 2)``. Both must have the same size. Numpy/PIL input gives a numpy array, tensor
    input a float32 tensor on the input's device.

    Value ranges (``fastflow.images.to_float255``): uint8 is 0..255; uint16 is 0..65535 (scaled,
    never clipped); float images (any float dtype) are 0..1, as torchvision's ``to_tensor`` makes
    them, and values outside 0..1 raise ValueError (divide 0..255 data by 255 or pass uint8); other
    dtypes raise. PIL images: EXIF orientation applied, 16-bit greyscale kept at 16 bits, other modes
    converted as ``convert("RGB")``. (The ``FlowNet2S`` module itself takes float 0..255.)

    FlowNet2-S needs sides that are multiples of 64, so both images are resized bilinearly
    (antialiased when shrinking) to the nearest multiples of 64 (``network_size``), the network runs
    there, and its flow is resized back to ``H x W`` with u scaled by ``W / W64`` and v by ``H / H64``,
    so the flow is in pixels of the original images.

    Precision is the model's own (``model.half()``, ``.bfloat16()``, :func:`fastflow.precision.apply`):
    ``torch.autocast`` has no effect on a fastflow ``FlowNet2S``, and a call under an enabled autocast
    warns saying so.
    """
    a, kind_a = to_image_tensor(img1, "img1")
    b, kind_b = to_image_tensor(img2, "img2")
    if a.shape != b.shape:
        raise ValueError(f"img1 and img2 differ in size: {tuple(a.shape)} vs {tuple(b.shape)} (as (B, 3, H, W))")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a FlowNet2S module, got {type(model).__name__}")
    param = next(model.parameters())
    if isinstance(model, _Fused) and torch.is_autocast_enabled(param.device.type):
        import warnings

        warnings.warn(f"torch.autocast has no effect on fastflow.FlowNet2S: it runs in its own precision "
                      f"({str(param.dtype).replace('torch.', '')}); use model.half() / model.bfloat16() or "
                      "fastflow.precision.apply(model, 'fp16' | 'bf16')", UserWarning, stacklevel=2)
    out_device = a.device
    _, _, h, w = a.shape
    h64, w64 = network_size(h, w)
    pair = torch.stack((a, b), dim=2).to(param.device)  # (B, 3, 2, H, W)
    if (h64, w64) != (h, w):
        flat = pair.flatten(1, 2)
        flat = F.interpolate(flat, size=(h64, w64), mode="bilinear", align_corners=False, antialias=(h64 < h or w64 < w))
        pair = flat.unflatten(1, (3, 2))
    if not isinstance(model, _Fused) and param.is_floating_point():
        pair = pair.to(param.dtype)  # the reference module wants input in its own dtype
    was_training = model.training
    model.eval()  # the eval forward gives full-resolution flow in pixels
    try:
        with torch.no_grad():
            flow = model(pair.contiguous()).float()
    finally:
        model.train(was_training)
    if (h64, w64) != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
        flow = flow * torch.tensor([w / w64, h / h64], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    flow = flow.permute(0, 2, 3, 1).to(out_device)
    if not kind_a.endswith("-batch"):
        flow = flow[0]
    if kind_a.startswith(("numpy", "pil")):
        return flow.contiguous().cpu().numpy()
    return flow.contiguous()
