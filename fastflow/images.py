"""Reading images and frames, and the one value-range rule: every image fastflow reads comes from here.

- ``read_image(path)``: ``(H, W, 3)`` RGB, ``uint8`` for 8-bit files, ``uint16`` for 16-bit files
  (greyscale ``I;16`` / ``I`` and 16-bit RGB PNG or TIFF; 16-bit RGB keeps its 16 bits when OpenCV is
  installed, otherwise Pillow's 8-bit reduction of it, which is scaled, not clipped), EXIF orientation
  applied, greyscale / RGBA / palette / CMYK images converted as Pillow's ``convert("RGB")`` does.
- ``list_frames(folder)`` / ``natural_key(name)``: image files in natural order (``2.png`` before
  ``10.png``).
- ``open_frames(source)``: the frames of a video file or of a folder of images, as a ``FrameSource``.
- ``to_float255(img)``: the value-range rule, the same for the API, the CLI and frame folders:
  ``uint8`` is 0..255, ``uint16`` is 0..65535 (scaled by 255/65535, never clipped), float images are
  0..1 (values outside raise ValueError), other dtypes raise. Result: float32 0..255, the input the
  network was trained on.

Heavy imports (PIL, imageio, torch, cv2) happen inside functions.
"""
from __future__ import annotations

import os as _os
import re as _re
from typing import Iterator, List, Optional

from .util import first_line

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

__all__ = ["IMAGE_EXTS", "FrameSource", "list_frames", "natural_key", "open_frames", "pil_to_array", "read_image",
           "to_float255"]

_DIGITS = _re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key putting ``frame2.png`` before ``frame10.png`` (digit runs compare as numbers, the rest
    case-insensitively; ties broken by the exact name so the order is total)."""
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def list_frames(folder: str) -> List[str]:
    """Paths of the image files in ``folder`` (by extension, hidden files skipped), in natural order.

    Raises ValueError if ``folder`` is not a directory.
    """
    if not _os.path.isdir(folder):
        raise ValueError(f"not a folder: {folder}")
    names = [f for f in _os.listdir(folder)
             if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".") and _os.path.isfile(_os.path.join(folder, f))]
    return [_os.path.join(folder, f) for f in sorted(names, key=natural_key)]


def _is_16bit_rgb(im) -> bool:
    """True for a file Pillow opens as 8-bit RGB(A) but that holds 16 bits per channel."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if isinstance(tile, tuple) else getattr(tile, "args", None)
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def _read_16bit_rgb(path: str):
    """``(H, W, 3)`` uint16 via OpenCV, or None when OpenCV is missing or cannot read it."""
    try:
        import cv2
    except ImportError:
        return None
    import numpy as np

    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    return np.ascontiguousarray(arr[..., 2::-1])  # BGR(A) -> RGB


def _orientation(im) -> int:
    """The EXIF orientation tag (1..8) of a PIL image; 1 when absent or malformed."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF: no orientation
        return 1


def _apply_orientation(arr, orientation: int):
    """Apply EXIF orientation (1..8) to an HxWxC array, as ``ImageOps.exif_transpose`` does."""
    import numpy as np

    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def pil_to_array(im, name: str = "image"):
    """A PIL image as an ``(H, W, 3)`` uint8 or uint16 array, EXIF orientation applied.

    16-bit greyscale (``I;16*``, and ``I`` holding 0..65535) stays 16-bit, replicated to three
    channels; every other mode becomes RGB as ``convert("RGB")`` makes it. Raises ValueError for
    float (``F``) images and ``I`` images outside 0..65535.
    """
    import numpy as np
    from PIL import ImageOps

    orientation = _orientation(im)
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # Pillow cannot transpose this mode: do it on the array below
            pass
        else:
            orientation = 1
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"{name}: 32-bit integer image with values {arr.min()}..{arr.max()}, outside 0..65535; "
                             "save it as 8- or 16-bit")
        arr = np.repeat(arr.astype(np.uint16)[..., None], 3, axis=2)
    elif mode == "F":
        raise ValueError(f"{name}: 32-bit float image files are not supported (their value range is unknown); "
                         "load it yourself and pass a float array in 0..1 to estimate_flow")
    else:
        arr = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    arr = _apply_orientation(arr, orientation)
    # np.asarray of a PIL image is read-only; callers (torch.from_numpy in warp, in-place edits) need
    # a writable array, and this is the image's only copy
    return arr if arr.flags.writeable else arr.copy()


def read_image(path: str):
    """Read an image file as ``(H, W, 3)`` RGB: uint8 for 8-bit files, uint16 for 16-bit ones.

    EXIF orientation is applied. Raises ValueError naming the file if it is missing, a folder, or
    not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = _os.fspath(path)
    if not _os.path.exists(path):
        raise ValueError(f"image not found: {path}")
    if _os.path.isdir(path):
        raise ValueError(f"expected an image file, got a folder: {path}")
    try:
        with Image.open(path) as im:
            if _is_16bit_rgb(im):
                arr = _read_16bit_rgb(path)
                if arr is not None:
                    return _apply_orientation(arr, _orientation(im))
            im.load()
            return pil_to_array(im, path)
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"cannot read image {path}: {first_line(e)}") from None
    except ValueError as e:
        msg = first_line(e)
        raise ValueError(msg if path in msg else f"cannot read image {path}: {msg}") from None


def to_float255(img, name: str = "image"):
    """The value-range rule: ``img`` (numpy array or torch tensor) as float32 in 0..255.

    - ``uint8``: 0..255, unchanged.
    - ``uint16``: 0..65535, scaled by 255/65535 (never clipped).
    - float (16/32/64-bit, bfloat16): 0..1, multiplied by 255. Finite values outside 0..1 raise
      ValueError (NaN / Inf pass through and make that pair's flow NaN).
    - anything else (bool, signed or wider integers, complex) raises ValueError: their range is
      ambiguous.

    Returns the same kind (numpy float32 array or float32 tensor on the same device).
    """
    import numpy as np

    if isinstance(img, np.ndarray):
        dt = img.dtype
        if dt == np.uint8:
            return img.astype(np.float32)
        if dt == np.uint16:
            return img.astype(np.float32) * np.float32(255.0 / 65535.0)
        if np.issubdtype(dt, np.floating):
            fin = img[np.isfinite(img)]
            if fin.size:
                _check_unit_range(name, dt, float(fin.min()), float(fin.max()))
            return img.astype(np.float32) * np.float32(255.0)
        _bad_dtype(name, dt)
    import torch

    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array or a torch.Tensor, got {type(img).__name__}")
    dt = img.dtype
    if dt == torch.uint8:
        return img.float()
    if dt == getattr(torch, "uint16", None):
        return img.to(torch.int32).float() * (255.0 / 65535.0)
    if dt.is_floating_point:
        fin = img[torch.isfinite(img)] if img.numel() else img
        if fin.numel():
            lo, hi = torch.aminmax(fin.float())
            _check_unit_range(name, dt, float(lo), float(hi))
        return img.float() * 255.0
    _bad_dtype(name, dt)


def _check_unit_range(name, dtype, lo: float, hi: float) -> None:
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name}: float images must hold values in 0..1, got {lo:.6g}..{hi:.6g} ({dtype}); "
            "for 0..255 data pass uint8 or divide by 255, for 16-bit data pass uint16, "
            "or call the FlowNet2S module itself, which takes float 0..255 at multiples of 64"
        )


def _bad_dtype(name, dtype) -> None:
    raise ValueError(
        f"{name}: unsupported dtype {dtype}; pass uint8 (0..255), uint16 (0..65535) or float (0..1)"
    )


# ------------------------------------------------------------------------------------------ frames
class FrameSource:
    """The frames of a video or a folder, read one at a time: iterate for ``(H, W, 3)`` arrays.

    ``count``: number of frames (exact for folders; for videos the container's figure, which can be
    off by a frame or be None). ``fps``: the video's frame rate (None for folders or when unknown).
    ``names``: for folders, each frame's file name without extension (None for videos); ``paths``:
    the files (None for videos). ``close()`` releases the video; also a context manager. A folder's
    frames are uint8 or uint16 (``read_image``); a video's are uint8. A frame that cannot be read
    raises ValueError naming it.
    """

    def __init__(self, source: str, *, paths: Optional[List[str]] = None, count: Optional[int] = None,
                 fps: Optional[float] = None, iterator=None):
        self.source = source
        self.paths = paths
        self.names = None if paths is None else [_os.path.splitext(_os.path.basename(p))[0] for p in paths]
        self.count = count
        self.fps = fps
        self._iterator = iterator

    def __iter__(self) -> Iterator:
        if self.paths is not None:
            return (read_image(p) for p in self.paths)
        if self._iterator is None:
            raise ValueError(f"{self.source}: the video was already read or closed")
        it, self._iterator = self._iterator, None
        return it

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError(f"{self.source}: the number of frames is unknown")
        return self.count

    def close(self) -> None:
        it, self._iterator = self._iterator, None
        if it is not None and hasattr(it, "close"):
            it.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _video_meta(source: str):
    """(fps, frame count) from the container, each None when unknown."""
    import math

    try:
        import imageio.v3 as iio

        meta = iio.immeta(source)
    except Exception:
        return None, None
    fps = meta.get("fps")
    fps = float(fps) if isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0 else None
    n = meta.get("nframes")
    count = int(n) if isinstance(n, (int, float)) and math.isfinite(n) and n > 0 else None
    if count is None and fps is not None:
        dur = meta.get("duration")
        if isinstance(dur, (int, float)) and math.isfinite(dur) and dur > 0:
            count = int(round(dur * fps))
    return fps, count


def open_frames(source: str) -> FrameSource:
    """Open a folder of images (natural order) or a video file (needs ``fastflow[video]``).

    Raises ValueError (missing source, a folder with no images, an unreadable video) or ImportError
    (video without imageio), each naming the source.
    """
    import numpy as np

    source = _os.fspath(source)
    if not _os.path.exists(source):
        raise ValueError(f"video or frame folder not found: {source}")
    if _os.path.isdir(source):
        paths = list_frames(source)
        if not paths:
            raise ValueError(f"{source} holds no image files ({', '.join(IMAGE_EXTS)})")
        return FrameSource(source, paths=paths, count=len(paths))
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ImportError("reading video needs imageio and imageio-ffmpeg: pip install '.[video]' in fastflow's "
                          "source folder (or pip install imageio imageio-ffmpeg)") from None
    try:
        it = iio.imiter(source)
        first = next(it)
    except StopIteration:
        raise ValueError(f"{source} has no frames") from None
    except Exception as e:
        raise ValueError(f"cannot read video {source}: {first_line(e)}") from None
    fps, count = _video_meta(source)

    def frames():
        try:
            yield _video_frame(first)
            for fr in it:
                yield _video_frame(fr)
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"cannot read video {source}: {first_line(e)}") from None
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _video_frame(fr):
        a = np.asarray(fr)
        if a.ndim == 2:
            a = a[..., None]
        if a.shape[-1] < 3:
            a = np.repeat(a[..., :1], 3, axis=2)
        return np.ascontiguousarray(a[..., :3]) if a.shape[-1] != 3 else a

    return FrameSource(source, count=count, fps=fps, iterator=frames())
