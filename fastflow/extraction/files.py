"""Writing files safely, and the four formats' encoders.

Every file is written under a temporary name in its folder (``.<name>.fastflow-tmp``) and renamed,
so a file with its final name is always complete."""
from __future__ import annotations

import json
import os
from typing import Callable, List, Tuple

__all__ = ["TMP_TAG", "JPEG_QUALITY", "is_tmp", "tmp_name", "atomic_write", "write_json", "write_one",
           "save_jpeg", "quantize_flow", "flow_files"]

TMP_TAG = ".fastflow-tmp"
JPEG_QUALITY = 95  # OpenCV's default, what denseflow's cv::imwrite uses


def is_tmp(fname: str) -> bool:
    """A temporary file of an extract run (hidden, tagged): always safe to remove."""
    return fname.startswith(".") and fname.endswith(TMP_TAG)


def tmp_name(path: str) -> str:
    d, b = os.path.split(path)
    return os.path.join(d, f".{b}{TMP_TAG}")


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``; the temporary file is removed on failure."""
    tmp = tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_json(path: str, obj) -> None:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)

    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, w)


def write_one(item: Tuple[str, Callable, object]) -> None:
    path, write, data = item
    atomic_write(path, lambda tmp: write(tmp, data))


def save_jpeg(path: str, arr) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, format="JPEG", quality=JPEG_QUALITY)


def quantize_flow(flow, bound: float = 20.0):
    """denseflow's 8-bit flow: ``(x, y)`` uint8 ``(H, W)`` images, ``round((c + bound) * 255 /
    (2 * bound))`` clipped to 0..255, for c = u and v of an ``(H, W, 2)`` flow (NaN counts as 0)."""
    import numpy as np

    f = np.clip(np.nan_to_num(np.asarray(flow, dtype=np.float64), nan=0.0), -2 * bound, 2 * bound)
    q = np.clip(np.rint(255.0 * (f + bound) / (2.0 * bound)), 0, 255).astype(np.uint8)  # dense_flow's CAST
    return q[..., 0], q[..., 1]


def flow_files(fmt: str, index: int, stem: str, flow, bound: float) -> List[Tuple[str, Callable, object]]:
    """The files of one pair in format ``fmt`` (not npy): ``(file name, writer(path, data), data)``.
    ``flo`` / ``kitti`` are named by the pair's first frame ``stem``; ``denseflow`` by its number
    from 1, as denseflow and mmaction2 number frames."""
    from ..io import write_flo, write_kitti_png

    if fmt == "flo":
        return [(f"{stem}.flo", write_flo, flow)]
    if fmt == "kitti":
        return [(f"{stem}.png", write_kitti_png, flow)]
    if fmt == "denseflow":
        x, y = quantize_flow(flow, bound)
        return [(f"flow_x_{index + 1:05d}.jpg", save_jpeg, x), (f"flow_y_{index + 1:05d}.jpg", save_jpeg, y)]
    raise ValueError(f"flow_files: format {fmt!r} has no per-pair files")
