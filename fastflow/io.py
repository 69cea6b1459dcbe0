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
import zlib

import numpy as np

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KITTI_OFFSET = 2**15
_KITTI_SCALE = 64.0
# Bytes per RGB16 pixel: the PNG filters' "bpp" (distance to the corresponding byte on the left).
_RGB16_BPP = 6
# Deflate cannot expand data by more than about 1032:1, so a compressed stream of n bytes can never
# hold more than this many times n bytes of pixels; checked before decompressing anything.
_MAX_DEFLATE_RATIO = 1032
_IDAT_CHUNK = 1 << 20


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
# Why a hand-written PNG codec: KITTI flow needs 3-channel 16-bit PNGs, and Pillow (checked with
# Pillow 13) silently reads them as 8-bit RGB and cannot write them at all. imageio/pypng would add
# a dependency (and pypng's filters are pure-Python loops); OpenCV must not be a runtime dependency.
# PNG restricted to this one case (non-interlaced, bit depth 16, colour type 2) is small: chunks with
# CRC-32, a zlib stream of rows each prefixed by a filter-type byte, big-endian samples.


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png_rgb16(path, pixels: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint16 array as a 16-bit RGB PNG."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(height, width * _RGB16_BPP)
    # Filter type 1 (Sub) on every row: flow fields are smooth, so byte differences to the left pixel
    # compress far better than raw samples, and every row decodes without its neighbours.
    filtered = np.empty((height, 1 + rows.shape[1]), dtype=np.uint8)
    filtered[:, 0] = 1
    filtered[:, 1 : 1 + _RGB16_BPP] = rows[:, :_RGB16_BPP]
    np.subtract(rows[:, _RGB16_BPP:], rows[:, :-_RGB16_BPP], out=filtered[:, 1 + _RGB16_BPP :])
    stream = zlib.compress(filtered.tobytes(), 6)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr)]
    parts += [_png_chunk(b"IDAT", stream[i : i + _IDAT_CHUNK]) for i in range(0, len(stream), _IDAT_CHUNK)]
    parts.append(_png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(b"".join(parts))


def _unfilter(filtered: np.ndarray, filter_types: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG row filters.

    Args:
        filtered: ``(H, W, bpp)`` uint8 filtered bytes (filter-type bytes removed).
        filter_types: ``(H,)`` uint8, each in 0..4 (None, Sub, Up, Average, Paeth).
        bpp: bytes per pixel.

    Returns:
        ``(H, W, bpp)`` uint8 reconstructed bytes.
    """
    height, width = filtered.shape[:2]
    if np.all(filter_types <= 1):
        # None and Sub rows do not depend on the previous row: Sub is a running sum mod 256 along
        # the row, so the whole image decodes at once (our writer uses Sub on every row).
        out = filtered.copy()
        sub = filter_types == 1
        out[sub] = np.cumsum(filtered[sub], axis=1, dtype=np.uint8)
        return out
    # General case. Each byte depends on its left (a), upper (b) and upper-left (c) neighbours, which
    # all lie on earlier anti-diagonals y + x = const, so we sweep anti-diagonals: H + W - 1 vector
    # steps instead of a Python loop over every byte. `recon` has a zero row and column in front
    # because the filters treat bytes outside the image as 0.
    recon = np.zeros((height + 1, width + 1, bpp), dtype=np.int16)
    ftype = filter_types.astype(np.int16)
    for d in range(height + width - 1):
        y = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        x = d - y
        a = recon[y + 1, x]
        b = recon[y, x + 1]
        c = recon[y, x]
        # Paeth distances |p - a|, |p - b|, |p - c| with p = a + b - c, simplified.
        pa = np.abs(b - c)
        pb = np.abs(a - c)
        pc = np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        f = ftype[y][:, None]
        predictor = np.select([f == 1, f == 2, f == 3, f == 4], [a, b, (a + b) >> 1, paeth], 0)
        recon[y + 1, x + 1] = (filtered[y, x] + predictor) & 0xFF
    return recon[1:, 1:].astype(np.uint8)


def _decode_png_rgb16(path) -> np.ndarray:
    """Read a non-interlaced 16-bit RGB PNG into an ``(H, W, 3)`` uint16 array."""
    name = repr(os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError(f"{name}: not a PNG file (bad signature)")
    pos = 8
    header = None
    idat = []
    seen_iend = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"{name}: truncated PNG (incomplete chunk header at byte {pos})")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            raise ValueError(
                f"{name}: truncated PNG: chunk {kind!r} needs {length + 4} bytes, "
                f"file has {len(data) - pos - 8}"
            )
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"{name}: corrupt PNG: CRC mismatch in chunk {kind!r}")
        pos = end
        if header is None and kind != b"IHDR":
            raise ValueError(f"{name}: corrupt PNG: first chunk is {kind!r}, expected b'IHDR'")
        if kind == b"IHDR":
            if header is not None or length != 13:
                raise ValueError(f"{name}: corrupt PNG: bad IHDR chunk")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            seen_iend = True
            break  # like libpng, ignore anything after IEND
        elif kind != b"PLTE" and not (kind[0] & 0x20):
            # Bit 5 of the first byte clear = critical chunk, which a decoder must understand.
            raise ValueError(f"{name}: unsupported critical PNG chunk {kind!r}")
    if header is None:
        raise ValueError(f"{name}: truncated PNG: no IHDR chunk")
    if not seen_iend:
        raise ValueError(f"{name}: truncated PNG: no IEND chunk")

    width, height, depth, colour, compression, filter_method, interlace = header
    if width == 0 or height == 0 or width > 2**31 - 1 or height > 2**31 - 1:
        raise ValueError(f"{name}: corrupt PNG: invalid size {width}x{height}")
    if depth != 16 or colour != 2:
        raise ValueError(
            f"{name}: KITTI flow PNGs are 16-bit RGB (bit depth 16, colour type 2), "
            f"got bit depth {depth}, colour type {colour}"
        )
    if compression != 0 or filter_method != 0:
        raise ValueError(f"{name}: corrupt PNG: unknown compression/filter method")
    if interlace != 0:
        raise ValueError(f"{name}: interlaced PNGs are not supported")

    stride = 1 + width * _RGB16_BPP
    expected = height * stride
    stream = b"".join(idat)
    if expected > _MAX_DEFLATE_RATIO * len(stream) + 1024:
        raise ValueError(
            f"{name}: truncated PNG: {width}x{height} needs {expected} bytes of pixel data, "
            f"far more than {len(stream)} compressed bytes can hold"
        )
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the allocation even for a stream that would inflate to more.
        raw = inflater.decompress(stream, expected + 1)
    except zlib.error as e:
        raise ValueError(f"{name}: corrupt PNG: bad image data ({e})") from None
    if len(raw) != expected or not inflater.eof:
        raise ValueError(
            f"{name}: truncated or corrupt PNG: expected {expected} bytes of pixel data, "
            f"got {len(raw)}{'' if inflater.eof else ' (compressed stream incomplete)'}"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    filter_types = rows[:, 0]
    if np.any(filter_types > 4):
        raise ValueError(f"{name}: corrupt PNG: invalid row filter type {int(filter_types.max())}")
    pixels = _unfilter(rows[:, 1:].reshape(height, width, _RGB16_BPP), filter_types, _RGB16_BPP)
    return pixels.view(">u2").reshape(height, width, 3).astype(np.uint16)


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
    pixels = _decode_png_rgb16(path)
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
    _encode_png_rgb16(path, encoded)


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
