"""What decides an extract run's output files: the options (compared against a finished input's
record), the frame size they give, and the frame conversion the model sees."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from ..util import parse_size  # noqa: F401 - re-exported: --size HEIGHTxWIDTH, any positive size

__all__ = ["FORMATS", "Options", "parse_size", "target_size", "resize_frame", "plural"]

FORMATS = ("flo", "kitti", "denseflow", "npy")


@dataclasses.dataclass(frozen=True)
class Options:
    """The options an input's files depend on (stored in its completion record)."""

    format: str = "flo"
    step: int = 1
    size: Optional[Tuple[int, int]] = None  # (height, width) frames are resized to
    short_side: Optional[int] = None  # or: the shorter side resized to this, aspect kept
    bound: float = 20.0  # denseflow: [-bound, bound] -> 0..255
    rgb: bool = False  # also write img_%05d.jpg per frame
    precision: str = "fp32"  # the resolved name (fastflow.precision.resolve / of): what the model runs in
    weights: Optional[str] = None  # "state:<sha256>" of the model's float32 state dict, or "random (seed N)"

    def validate(self) -> None:
        """ValueError naming the option and the allowed values."""
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if not isinstance(self.step, int) or isinstance(self.step, bool) or self.step < 1:
            raise ValueError(f"step must be a positive integer, got {self.step!r}")
        if self.size is not None and self.short_side is not None:
            raise ValueError("give either size or short_side, not both")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be (height, width), both positive, got {self.size!r}")
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f"short_side must be positive, got {self.short_side!r}")
        if not (isinstance(self.bound, (int, float)) and 0 < self.bound < float("inf")):
            raise ValueError(f"bound must be a positive number, got {self.bound!r}")

    def record(self) -> dict:
        """The options as stored in a completion record (bound only matters for denseflow)."""
        d = dataclasses.asdict(self)
        d["size"] = list(self.size) if self.size else None
        if self.format != "denseflow":
            d["bound"] = None
        return d


def target_size(height: int, width: int, opts: Options) -> Tuple[int, int]:
    """The (height, width) the frames of an input are resized to (their own size if neither
    ``size`` nor ``short_side`` is set)."""
    if opts.size is not None:
        return tuple(opts.size)
    if opts.short_side is not None:
        s = opts.short_side
        if height <= width:
            return s, max(1, int(round(width * s / height)))
        return max(1, int(round(height * s / width))), s
    return height, width


def resize_frame(frame, size: Tuple[int, int]):
    """An ``(H, W, 3)`` frame as 8-bit RGB at ``size`` = (height, width): 16-bit frames reduced to
    8 bits (``images.to_float255``, rounded), then resized bilinearly (antialiased when shrinking,
    Pillow's ``resize``). This is exactly what the model sees in ``extract``."""
    import numpy as np

    if frame.dtype != np.uint8:
        from ..images import to_float255

        frame = np.clip(np.rint(to_float255(frame)), 0, 255).astype(np.uint8)
    if frame.shape[:2] == tuple(size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))


def plural(n: int, word: str) -> str:
    """``1 pair``, ``2 pairs``, ``0 inputs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")
