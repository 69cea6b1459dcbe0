"""Optical-flow files: Middlebury ``.flo`` and KITTI 16-bit ``.png``.

All readers return ``(H, W, 2)`` float32 arrays holding ``(u, v)`` in pixels (``u`` along columns,
``v`` along rows). Writers accept NumPy arrays or torch tensors (any device) of shape ``(H, W, 2)``.

Both readers check every size the file claims against the bytes it actually has *before*
allocating, so a corrupt or hostile header raises :class:`ValueError` instead of trying to allocate
gigabytes. Every ``ValueError`` names the file.

This module needs only NumPy and the standard library; torch tensors are recognised without
importing torch (a tensor can only exist if torch is already imported).
"""

from __future__ import annotations

import os
import struct
import sys

import numpy as np

from . import png16

__all__ = [
    "UNKNOWN_FLOW_THRESH",
    "read_flo",
    "write_flo",
    "read_kitti_png",
    "write_kitti_png",
    "read_flow",
    "write_flow",
]

#: Middlebury convention: a flow component whose magnitude reaches this value means "unknown".
UNKNOWN_FLOW_THRESH = 1e9
# Value written for unknown pixels when a validity mask is stored in a .flo file (Middlebury's
# UNKNOWN_FLOW); anything >= UNKNOWN_FLOW_THRESH reads back as invalid.
_UNKNOWN_FLOW = 1e10

_FLO_MAGIC = b"PIEH"  # float32 202021.25, little-endian
_FLO_HEADER = struct.Struct("<4sii")

_KITTI_OFFSET = 2**15
_KITTI_SCALE = 64.0


# --------------------------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------------------------


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x, name: str, dtype) -> np.ndarray:
    """NumPy copy/view of an array or tensor (any device) as ``dtype``; rejects non-numeric data."""
    if _is_tensor(x):
        if x.dtype.is_complex or x.dtype == sys.modules["torch"].bool:
            raise TypeError(f"{name} must have a real numeric dtype, got {x.dtype}")
        # Through float64 on the tensor's device first: numpy cannot take bfloat16.
        x = x.detach().to(device="cpu", dtype=sys.modules["torch"].float64).numpy()
    else:
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must have a real numeric dtype, got {x.dtype}")
    return x.astype(dtype, copy=False)


def _flow_array(flow, dtype) -> np.ndarray:
    """Validate a flow field and return it as an ``(H, W, 2)`` NumPy array of ``dtype``."""
    shape = tuple(flow.shape) if hasattr(flow, "shape") else np.shape(flow)
    if len(shape) != 3 or shape[2] != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"flow must have shape (H, W, 2) with H, W >= 1, got {shape}")
    return _to_numpy(flow, "flow", dtype)


def _valid_array(valid, hw: tuple[int, int]) -> np.ndarray:
    """Validate a validity mask for an ``hw``-sized flow; returns an ``(H, W)`` bool array."""
    shape = tuple(valid.shape) if hasattr(valid, "shape") else np.shape(valid)
    if shape != hw:
        raise ValueError(f"valid must have shape (H, W) = {hw}, got {shape}")
    if _is_tensor(valid):
        return valid.detach().ne(0).cpu().numpy()
    valid = np.asarray(valid)
    if valid.dtype.kind not in "biuf":
        raise TypeError(f"valid must be boolean or numeric, got {valid.dtype}")
    return valid.astype(bool)


def _known(flow: np.ndarray) -> np.ndarray:
    """``(H, W)`` mask of pixels whose flow is finite and below the Middlebury unknown threshold."""
    with np.errstate(invalid="ignore"):
        return np.all(np.abs(flow) < UNKNOWN_FLOW_THRESH, axis=-1)  # False for NaN and +-Inf


# --------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------


def read_flo(path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Layout (little-endian): the 4 bytes ``PIEH`` (float32 202021.25), int32 width, int32 height,
    then ``H * W * 2`` float32 values, ``(u, v)`` interleaved, row-major.

    Args:
        path: file path (str or ``os.PathLike``).

    Returns:
        ``(H, W, 2)`` float32 array. Unknown-flow markers (values >= 1e9, NaN) are returned as is;
        :func:`read_flow` with ``return_valid=True`` turns them into a mask.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic, non-positive size, size that does not match the file's length
            (truncated data or trailing bytes).
    """
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        header = f.read(_FLO_HEADER.size)
        if len(header) < _FLO_HEADER.size:
            raise ValueError(
                f"{os.fspath(path)!r}: not a .flo file: {len(header)} bytes, "
                f"shorter than the {_FLO_HEADER.size}-byte header"
            )
        magic, width, height = _FLO_HEADER.unpack(header)
        if magic != _FLO_MAGIC:
            raise ValueError(
                f"{os.fspath(path)!r}: not a .flo file: magic is {magic!r}, expected {_FLO_MAGIC!r} "
                f"(float 202021.25)"
            )
        if width <= 0 or height <= 0:
            raise ValueError(f"{os.fspath(path)!r}: invalid .flo size {width}x{height} (width x height)")
        # Python ints: no overflow for absurd headers such as 2**31-1 x 2**31-1.
        expected = width * height * 2 * 4
        available = file_size - _FLO_HEADER.size
        if available < expected:
            raise ValueError(
                f"{os.fspath(path)!r}: truncated .flo file: header says {width}x{height}, "
                f"expected {expected} bytes of flow data, file has {available}"
            )
        if available > expected:
            raise ValueError(
                f"{os.fspath(path)!r}: {available - expected} trailing bytes after the {width}x{height} "
                f".flo data (expected {expected} bytes of flow data, file has {available})"
            )
        flow = np.empty((height, width, 2), dtype="<f4")
        got = f.readinto(memoryview(flow).cast("B"))
        if got != expected:  # the file shrank between fstat and read
            raise ValueError(
                f"{os.fspath(path)!r}: truncated .flo file: expected {expected} bytes of flow data, "
                f"read {got}"
            )
    return flow.astype(np.float32, copy=False)


def write_flo(path, flow) -> None:
    """Write a Middlebury ``.flo`` file.

    Args:
        path: file path (str or ``os.PathLike``).
        flow: ``(H, W, 2)`` NumPy array or torch tensor (any device), any real dtype; stored as
            float32. NaN and Inf are written as they are.

    Raises:
        ValueError: ``flow`` is not ``(H, W, 2)`` with ``H, W >= 1``.
        TypeError: ``flow`` is not real-valued.
    """
    flow = _flow_array(flow, "<f4")
    height, width = flow.shape[:2]
    if height > 2**31 - 1 or width > 2**31 - 1:
        raise ValueError(f".flo cannot store a {width}x{height} flow: int32 size fields")
    with open(path, "wb") as f:
        f.write(_FLO_HEADER.pack(_FLO_MAGIC, width, height))
        f.write(np.ascontiguousarray(flow).tobytes())


# --------------------------------------------------------------------------------------------
# KITTI 16-bit PNG
# --------------------------------------------------------------------------------------------
#
# The 16-bit RGB PNG codec itself is fastflow/png16.py.


def read_kitti_png(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG.

    Format: 16-bit RGB PNG; ``R = u * 64 + 2**15``, ``G = v * 64 + 2**15``, ``B`` = valid (non-zero).

    Args:
        path: file path (str or ``os.PathLike``).

    Returns:
        ``(flow, valid)``: ``(H, W, 2)`` float32 flow in pixels, 0 where invalid, and ``(H, W)``
        bool validity mask.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PNG, truncated or corrupt, or not 16-bit RGB.
    """
    pixels = png16.decode_rgb16(path)
    valid = pixels[..., 2] != 0
    flow = (pixels[..., :2].astype(np.float32) - _KITTI_OFFSET) / _KITTI_SCALE
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_png(path, flow, valid=None) -> None:
    """Write a KITTI flow PNG (16-bit RGB; see :func:`read_kitti_png`).

    Flow is quantised to 1/64 pixel (rounded to nearest) and clipped to the representable range
    ``[-512, 512 - 1/64]``: components with ``|u| >= 512`` are saturated. Invalid pixels are
    written as ``(0, 0, 0)``.

    Args:
        path: file path (str or ``os.PathLike``).
        flow: ``(H, W, 2)`` NumPy array or torch tensor (any device), any real dtype.
        valid: optional ``(H, W)`` mask (bool or numeric, non-zero = valid). Default: pixels whose
            flow is finite and below 1e9 (the Middlebury "unknown" threshold).

    Raises:
        ValueError: bad shapes, or non-finite flow at a pixel marked valid.
    """
    flow = _flow_array(flow, np.float64)
    known = _known(flow)
    if valid is None:
        valid = known
    else:
        valid = _valid_array(valid, flow.shape[:2])
        bad = int(np.count_nonzero(valid & ~known))
        if bad:
            raise ValueError(f"flow is not finite (or >= 1e9) at {bad} pixels marked valid")
    encoded = np.zeros(flow.shape[:2] + (3,), dtype=np.uint16)
    scaled = np.clip(np.rint(flow[valid] * _KITTI_SCALE + _KITTI_OFFSET), 0, 2**16 - 1)
    encoded[valid, :2] = scaled.astype(np.uint16)
    encoded[valid, 2] = 1
    png16.encode_rgb16(path, encoded)


# --------------------------------------------------------------------------------------------
# Dispatch on extension
# --------------------------------------------------------------------------------------------


def _format(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in (".flo", ".png"):
        raise ValueError(
            f"{os.fspath(path)!r}: unknown flow file extension {ext!r}; expected '.flo' or '.png' (KITTI)"
        )
    return ext


def read_flow(path, return_valid: bool = False):
    """Read a flow file, choosing the format from the extension (``.flo`` or KITTI ``.png``).

    Args:
        path: file path (str or ``os.PathLike``).
        return_valid: also return an ``(H, W)`` bool mask. For ``.png`` it is the file's validity
            channel; for ``.flo`` a pixel is valid when both components are finite and below 1e9
            in magnitude (the Middlebury "unknown flow" convention).

    Returns:
        ``(H, W, 2)`` float32 flow, or ``(flow, valid)`` when ``return_valid``.

    Raises:
        ValueError: unknown extension, or a corrupt file (see :func:`read_flo`, :func:`read_kitti_png`).
        FileNotFoundError: no such file.
    """
    if _format(path) == ".png":
        flow, valid = read_kitti_png(path)
    else:
        flow = read_flo(path)
        valid = _known(flow) if return_valid else None
    return (flow, valid) if return_valid else flow


def write_flow(path, flow, valid=None) -> None:
    """Write a flow file, choosing the format from the extension (``.flo`` or KITTI ``.png``).

    Args:
        path: file path (str or ``os.PathLike``).
        flow: ``(H, W, 2)`` NumPy array or torch tensor (any device), any real dtype.
        valid: optional ``(H, W)`` mask. For ``.png`` see :func:`write_kitti_png`. For ``.flo``,
            which has no validity channel, invalid pixels are written as 1e10 (Middlebury's
            UNKNOWN_FLOW), so ``read_flow(path, return_valid=True)`` gives the mask back.

    Raises:
        ValueError: unknown extension or bad shapes.
    """
    if _format(path) == ".png":
        write_kitti_png(path, flow, valid)
        return
    if valid is not None:
        flow = _flow_array(flow, np.float32).copy()
        flow[~_valid_array(valid, flow.shape[:2])] = _UNKNOWN_FLOW
    write_flo(path, flow)
