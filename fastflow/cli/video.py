"""``fastflow video SOURCE --out DIR``: flow between consecutive frames of a video or a frame folder."""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from ._common import CLIError, add_model_args, check_name, load_model, random_label, size_note, write_png


def register(sub) -> None:
    v = sub.add_parser("video", help="flow between consecutive frames of a video or a folder of frames")
    v.add_argument("source", help="video file (needs fastflow[video]) or folder of images (natural order: 2 before 10)")
    v.add_argument("--out", required=True, help="output folder (created if missing)")
    v.add_argument("--flo", action="store_true",
                   help="write one .flo per pair, named after its first frame (folders: NAME.flo; videos: "
                        "NNNNNN.flo, the first frame's index); the default if nothing else is asked")
    v.add_argument("--viz-frames", action="store_true", help="write a colour picture per pair, named like the .flo")
    v.add_argument("--viz-video", action="store_true", help="write flow.mp4, colour-coded (needs fastflow[video])")
    v.add_argument("--fps", type=float, default=None, help="frame rate of flow.mp4 (default: the source's, else 25)")
    v.add_argument("--per-frame-scale", action="store_true",
                   help="scale each colour picture to its own largest flow (default: one scale for the whole "
                        "video, its largest flow, or --max-flow)")
    v.add_argument("--batch", type=int, default=8, help="pairs per forward (default 8)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(v)
    v.add_argument("--max-flow", type=float, default=None, help="fixed colour normalisation (pixels)")
    v.set_defaults(func=run)


def _frames(source: str):
    """``fastflow.images.open_frames`` with its errors as CLI errors; folders need 2 frames."""
    from ..images import open_frames

    try:
        src = open_frames(source)
    except (ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    if src.paths is not None and len(src.paths) < 2:
        raise CLIError(f"{source} holds {len(src.paths)} image(s); need at least 2 frames")
    return src


def _pair_names(src) -> Optional[List[str]]:
    """Output names of a folder's pairs: the first frame's name without extension (with it when two
    files share a stem)."""
    if src.paths is None:
        return None
    names = src.names if len(set(src.names)) == len(src.names) else [os.path.basename(p) for p in src.paths]
    return names[:-1]


def _progress(total: Optional[int], enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="pair", desc=desc, file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def _max_known_magnitude(flows) -> float:
    import numpy as np

    from ..io import UNKNOWN_FLOW_THRESH

    u, v = flows[..., 0].astype(np.float64), flows[..., 1].astype(np.float64)
    known = (np.abs(u) < UNKNOWN_FLOW_THRESH) & (np.abs(v) < UNKNOWN_FLOW_THRESH)
    if not known.any():
        return 0.0
    return float(np.sqrt(u[known] ** 2 + v[known] ** 2).max())


def run(args) -> int:
    import tempfile

    import numpy as np

    from ..api import estimate_flow
    from ..images import to_float255
    from ..io import read_flo, write_flo
    from ..viz import flow_to_color

    if not args.flo and not args.viz_video and not args.viz_frames:
        args.flo = True
    if args.max_flow is not None and not args.max_flow > 0:
        raise CLIError(f"--max-flow must be positive, got {args.max_flow}")
    if args.fps is not None and not args.fps > 0:
        raise CLIError(f"--fps must be positive, got {args.fps}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} exists and is not a folder")
    src = _frames(args.source)
    names = _pair_names(src)
    # Output names are known for folders: check them now, not after the network ran.
    for stem in (names or ["000000"])[:]:
        for ext in [e for e, on in ((".flo", args.flo), (".png", args.viz_frames)) if on]:
            check_name(stem + ext, args.out)
    iio2 = None
    if args.viz_video:
        try:
            import imageio.v2 as iio2
        except ImportError:
            raise CLIError("--viz-video needs imageio and imageio-ffmpeg: pip install 'fastflow[video]'") from None
    fps = args.fps or src.fps or 25.0
    model = load_model(args)
    device = next(model.parameters()).device
    viz = args.viz_frames or args.viz_video
    fixed_scale = args.max_flow if args.max_flow is not None else None
    two_pass = viz and fixed_scale is None and not args.per_frame_scale

    created = not os.path.isdir(args.out)
    os.makedirs(args.out, exist_ok=True)
    writer = None
    store = None
    state = {"count": 0, "max": 0.0, "shape": None, "first": None}
    progress = _progress(src.count - 1 if src.count else None, not args.quiet, "flow")
    batch1, batch2 = [], []

    def name_of(i: int) -> str:
        return names[i] if names is not None else f"{i:06d}"

    def colour(i: int, flow) -> None:
        nonlocal writer
        rgb = flow_to_color(flow, max_flow=None if args.per_frame_scale else fixed_scale)
        if args.viz_frames:
            write_png(os.path.join(args.out, name_of(i) + ".png"), rgb)
        if args.viz_video:
            if writer is None:
                writer = iio2.get_writer(os.path.join(args.out, "flow.mp4"), fps=fps, macro_block_size=1)
            writer.append_data(rgb)

    def flush() -> None:
        if not batch1:
            return
        flows = estimate_flow(model, np.stack(batch1), np.stack(batch2))
        for f in flows:
            i = state["count"]
            if args.flo:
                write_flo(os.path.join(args.out, name_of(i) + ".flo"), f)
            if two_pass:
                state["max"] = max(state["max"], _max_known_magnitude(f))
                if store is not None:  # without .flo files, keep the flow in a temporary file
                    store.write(np.ascontiguousarray(f, dtype=np.float32).tobytes())
            elif viz:
                colour(i, f)
            state["count"] += 1
        progress.update(len(batch1))
        batch1.clear()
        batch2.clear()

    def frame_label(k: int) -> str:
        return src.paths[k] if src.paths is not None else f"frame {k} of {args.source}"

    ok = False
    try:
        if two_pass and not args.flo:
            store = tempfile.TemporaryFile(dir=args.out, prefix=".fastflow-")
        prev = None
        for k, frame in enumerate(src):
            if state["shape"] is None:
                state["shape"], state["first"] = frame.shape[:2], frame_label(k)
                size_note(device, *frame.shape[:2])
            elif frame.shape[:2] != state["shape"]:
                raise CLIError(f"{frame_label(k)} is {frame.shape[1]}x{frame.shape[0]}, but {state['first']} is "
                               f"{state['shape'][1]}x{state['shape'][0]}; all frames must have one size")
            frame = to_float255(frame) / np.float32(255.0)  # uint8 and 16-bit frames alike, as 0..1
            if prev is not None:
                batch1.append(prev)
                batch2.append(frame)
                if len(batch1) >= args.batch:
                    flush()
            prev = frame
        flush()
        progress.close()
        if state["count"] == 0:
            raise CLIError(f"{args.source} has fewer than 2 frames")
        if two_pass:
            fixed_scale = state["max"] if state["max"] > 0 else 1.0
            h, w = state["shape"]
            if store is not None:
                store.seek(0)
            recolour = _progress(state["count"], not args.quiet, "colour")
            for i in range(state["count"]):
                if store is not None:
                    f = np.frombuffer(store.read(h * w * 2 * 4), dtype=np.float32).reshape(h, w, 2)
                else:
                    f = read_flo(os.path.join(args.out, name_of(i) + ".flo"))
                colour(i, f)
                recolour.update(1)
            recolour.close()
        ok = True
    finally:
        progress.close()
        src.close()
        if store is not None:
            store.close()
        if writer is not None:
            writer.close()
        if not ok and created and os.path.isdir(args.out) and not os.listdir(args.out):
            os.rmdir(args.out)
    scale = ("per frame" if args.per_frame_scale else f"{fixed_scale:.3g} px = full colour") if viz else None
    print(f"wrote {state['count']} flow fields to {args.out}" + (f" (colour scale: {scale})" if scale else "")
          + random_label(args))
    return 0
