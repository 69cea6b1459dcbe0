"""Reading a video for extract: every decoded frame exactly once (no frames duplicated or dropped
to keep a constant rate), and the number of frames the container states, to compare at the end.

ffmpeg's default output sync duplicates frames over gaps, so a damaged file would come out with the
right count and shifted content; extract decodes with ``-fps_mode passthrough`` instead and fails an
input whose decoded count differs from the container's (AVI: the frame count in its header, exact;
other containers: duration x frame rate, within one frame). With ``-noautoscale`` a frame size that
changes midway fails the input too, instead of being rescaled to the first frame's size."""
from __future__ import annotations

import math
import os
import re
import struct
from typing import Iterator, Optional, Tuple

__all__ = ["open_video", "container_frames", "VIDEO_HINT"]

# ffmpeg's log line when the decoded frames change size (with -noautoscale they keep it)
_SIZE_CHANGE = re.compile(r"video parameters changed to [^\n]*?\b(\d+)x(\d+)\b")

VIDEO_HINT = "inputs are video files, folders of frames, or @list.txt files"
# Magic numbers of video containers ffmpeg reads (offset, bytes): a file with none of them that
# ffmpeg cannot open is "not a video", one with them is a damaged video.
_MAGIC = ((4, b"ftyp"), (0, b"RIFF"), (0, b"\x1aE\xdf\xa3"), (0, b"OggS"), (0, b"FLV"), (0, b"\x00\x00\x01\xba"),
          (0, b"\x00\x00\x01\xb3"), (0, b"\x30\x26\xb2\x75"), (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free"))


def _looks_like_video(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[o:o + len(m)] == m for o, m in _MAGIC)


def avi_frames(path: str) -> Optional[int]:
    """The video frame count an AVI's header states (OpenDML ``dmlh`` if present, else the video
    stream's ``strh`` length, else ``avih``), or None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    counts = []
    i = head.find(b"dmlh")  # OpenDML: the whole file's count (0 when the writer never filled it in)
    if i >= 0 and i + 12 <= len(head):
        counts.append(struct.unpack("<I", head[i + 8:i + 12])[0])
    i = head.find(b"strh")
    while i >= 0 and i + 44 <= len(head):  # the video stream's length
        if head[i + 8:i + 12] == b"vids":
            counts.append(struct.unpack("<I", head[i + 40:i + 44])[0])
            break
        i = head.find(b"strh", i + 4)
    i = head.find(b"avih")
    if i >= 0 and i + 28 <= len(head):
        counts.append(struct.unpack("<I", head[i + 24:i + 28])[0])
    for n in counts:
        if n:
            return n
    return None


def container_frames(path: str, meta: dict) -> Tuple[Optional[int], int]:
    """(frames the container states, tolerance in frames)."""
    n = avi_frames(path)
    if n:
        return n, 0
    dur, fps = meta.get("duration"), meta.get("fps")
    if isinstance(dur, (int, float)) and isinstance(fps, (int, float)) and math.isfinite(dur) and dur > 0 \
            and math.isfinite(fps) and fps > 0:
        return int(round(dur * fps)), 1
    return None, 0


def _sync_args():
    import imageio_ffmpeg

    try:
        major = int("".join(c for c in imageio_ffmpeg.get_ffmpeg_version().lstrip("n").split(".")[0] if c.isdigit()))
    except ValueError:
        major = 0
    # -noautoscale (ffmpeg >= 4.4): frames keep their own size, so a size change midway breaks the
    # raw stream (and is reported) instead of being rescaled to the first frame's size unnoticed.
    return ["-fps_mode", "passthrough", "-noautoscale"] if major >= 5 else ["-vsync", "passthrough"]


def open_video(path: str):
    """``(frames iterator of (H, W, 3) uint8, stated count or None, tolerance)``; ValueError naming the
    file (not a video / cannot read) or ImportError (no imageio-ffmpeg)."""
    import numpy as np

    try:
        import imageio_ffmpeg
    except ImportError:
        raise ImportError(f"{path}: reading video needs imageio-ffmpeg: pip install '.[video]' in fastflow's "
                          "source folder (or pip install imageio imageio-ffmpeg)") from None
    gen = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24", output_params=_sync_args())
    try:
        meta = next(gen)
    except Exception as e:  # noqa: BLE001 - ffmpeg's reasons, as one line
        gen.close()
        what = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in what if "Invalid data" in ln or "error" in ln.lower()), what[0] if what else "")
        if not _looks_like_video(path):
            raise ValueError(f"{path}: not a video fastflow can read ({detail[:120]}); {VIDEO_HINT}") from None
        raise ValueError(f"cannot read video {path}: {detail[:200] or type(e).__name__}") from None
    w, h = meta["size"]
    stated, tol = container_frames(path, meta)

    def frames() -> Iterator:
        try:
            for raw in gen:
                yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001
            changed = _SIZE_CHANGE.search(str(e))
            if changed:
                raise ValueError(f"the frame size changes midway ({w}x{h} -> {changed.group(1)}x"
                                 f"{changed.group(2)}); extract does not rescale frames silently: re-encode the "
                                 "video at one size") from None
            raise ValueError(f"cannot read video {path}: {str(e).strip().splitlines()[0] if str(e) else e!r}") from None
        finally:
            gen.close()

    return frames(), stated, tol


def check_count(path: str, decoded: int, stated: Optional[int], tol: int) -> Optional[str]:
    """The reason a video failed the count check, or None."""
    if stated is None or abs(decoded - stated) <= tol:
        return None
    return (f"decoded {decoded} frames but the container states {stated}: the video is damaged or truncated "
            f"(frames would be misnumbered, so no flow is kept); re-encode or repair {os.path.basename(path)}")
