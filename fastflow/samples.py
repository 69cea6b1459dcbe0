"""The material fastflow ships for trying things and for tests: a public-domain photograph (NASA's
"astronaut", ``fastflow/data``) and pairs cut from it with a known global motion. Used by
``fastflow bench``, the benchmarks and the tests."""
from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["DATA_DIR", "PAIR_SHIFT", "load_photo", "sample_pair"]

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# The pair's second frame is the crop shifted by this many pixels (x, y): true flow is -shift.
PAIR_SHIFT = (6, 4)


def load_photo() -> np.ndarray:
    """The shipped photograph as an (H, W, 3) uint8 array."""
    from PIL import Image

    with Image.open(os.path.join(DATA_DIR, "astronaut.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def sample_pair(height: int, width: int, batch: int = 1, device="cpu", variant: int = 0) -> torch.Tensor:
    """``(batch, 3, 2, height, width)`` float32 RGB 0..255 pair made from the shipped photograph.

    The photo is resized to cover ``height x width`` plus a margin, then cropped twice, the second
    crop shifted by PAIR_SHIFT; ``variant`` moves both crops (for rotating inputs), batch items
    use different crop positions.
    """
    img = torch.from_numpy(load_photo().copy()).permute(2, 0, 1).float()[None]
    dx, dy = PAIR_SHIFT
    margin = 8 * (batch + variant) + max(dx, dy) + 1
    scale = max((height + margin) / img.shape[2], (width + margin) / img.shape[3])
    size = (int(np.ceil(img.shape[2] * scale)), int(np.ceil(img.shape[3] * scale)))
    img = torch.nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    pairs = []
    for i in range(batch):
        o = 8 * (i + variant) % max(1, margin - max(dx, dy))
        f0 = img[:, o : o + height, o : o + width]
        f1 = img[:, o + dy : o + dy + height, o + dx : o + dx + width]
        pairs.append(torch.stack((f0, f1), dim=1))
    return torch.stack(pairs).clamp_(0, 255).contiguous().to(device)
