"""A 16-bit RGB PNG codec (non-interlaced, bit depth 16, colour type 2) in numpy + zlib.

Used for KITTI flow files (:func:`fastflow.io.read_kitti_png` / :func:`fastflow.io.write_kitti_png`).
Why hand-written: KITTI flow needs 3-channel 16-bit PNGs, and Pillow (checked with Pillow 13)
silently reads them as 8-bit RGB and cannot write them at all. imageio/pypng would add a dependency
(and pypng's filters are pure-Python loops); OpenCV must not be a runtime dependency. PNG restricted
to this one case is small: chunks with CRC-32, a zlib stream of rows each prefixed by a filter-type
byte, big-endian samples. The decoder refuses other PNGs with a ValueError naming the file.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

__all__ = ["encode_rgb16", "decode_rgb16", "unfilter"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes per RGB16 pixel: the PNG filters' "bpp" (distance to the corresponding byte on the left).
_RGB16_BPP = 6
# Deflate cannot expand data by more than about 1032:1, so a compressed stream of n bytes can never
# hold more than this many times n bytes of pixels; checked before decompressing anything.
_MAX_DEFLATE_RATIO = 1032
_IDAT_CHUNK = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_rgb16(path, pixels: np.ndarray) -> None:
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
    parts = [_SIGNATURE, _chunk(b"IHDR", ihdr)]
    parts += [_chunk(b"IDAT", stream[i : i + _IDAT_CHUNK]) for i in range(0, len(stream), _IDAT_CHUNK)]
    parts.append(_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(b"".join(parts))


def unfilter(filtered: np.ndarray, filter_types: np.ndarray, bpp: int) -> np.ndarray:
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


def decode_rgb16(path) -> np.ndarray:
    """Read a non-interlaced 16-bit RGB PNG into an ``(H, W, 3)`` uint16 array."""
    name = repr(os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != _SIGNATURE:
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
    pixels = unfilter(rows[:, 1:].reshape(height, width, _RGB16_BPP), filter_types, _RGB16_BPP)
    return pixels.view(">u2").reshape(height, width, 3).astype(np.uint16)
