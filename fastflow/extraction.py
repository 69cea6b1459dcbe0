"""``fastflow extract`` / ``fastflow.extract``: flow for whole video datasets, resumable.

Each input (a video file or a folder of frames) gets ``OUT/<name>/`` holding one file per pair of
frames ``(i, i + step)``, named by the pair's first frame, in one of four formats:

- ``flo``: ``<frame>.flo`` (Middlebury), ``kitti``: ``<frame>.png`` (KITTI 16-bit PNG), where
  ``<frame>`` is the first frame's file name without extension for folders and its 1-based number
  ``%05d`` for videos;
- ``denseflow``: mmaction2's rawframes layout as denseflow writes it: ``flow_x_00001.jpg`` and
  ``flow_y_00001.jpg`` (u and v mapped linearly from ``[-bound, bound]`` to 0..255, rounded,
  clipped; JPEG quality 95), and with ``rgb`` also ``img_00001.jpg`` for every frame;
- ``npy``: one ``flow.npy``, float16 ``(pairs, H, W, 2)``.

Safety: every file is written under a temporary name (``.<name>.fastflow-tmp``) and renamed. An
input counts as finished only when its completion record ``OUT/.fastflow-done/<name>.json`` (frames,
pairs, options, fastflow version, files) exists, and it is written last. A rerun skips finished
inputs, clears and redoes an unfinished one, and reports finished inputs made with other options
instead of mixing them (``overwrite=True`` redoes them). Files are synced to disk before the record.

Speed: frames are decoded and resized in a background thread ahead of the model, pairs are batched
through ``estimate_flow`` (the fused forward), and a writer thread (with a few helper threads for
a batch's files) encodes and writes the files, in order, while the model runs.
``workers=N`` runs N local processes (one per GPU, round robin); ``ray=`` runs the same work on a
Ray cluster, one model per worker (actor), failed tasks retried.

No heavy import (torch, ray, imageio) happens at import time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["FORMATS", "Options", "extract", "quantize_flow", "resize_frame"]

FORMATS = ("flo", "kitti", "denseflow", "npy")
RECORD_DIR = ".fastflow-done"
TMP_TAG = ".fastflow-tmp"
JPEG_QUALITY = 95  # OpenCV's default, what denseflow's cv::imwrite uses
ENCODER_THREADS: Optional[int] = None  # threads writing a batch's files; None: half the cores, 1..4
RAY_HELP = "--ray needs Ray: pip install 'fastflow[cluster]' (or pip install 'ray>=2.9')"
# Test hooks: SIGKILL this process after this many pairs are written (resume tests kill mid-input);
# with _KILL_ONCE_ENV set to a path, only if that file does not exist yet (it is created first), so
# a retried task (Ray) runs through.
_KILL_AFTER_ENV = "_FASTFLOW_TEST_KILL_AFTER_PAIRS"
_KILL_ONCE_ENV = "_FASTFLOW_TEST_KILL_ONCE"


# ------------------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class Options:
    """What decides the output files (compared against a finished input's record)."""

    format: str = "flo"
    step: int = 1
    size: Optional[Tuple[int, int]] = None  # (height, width) frames are resized to
    short_side: Optional[int] = None  # or: the shorter side resized to this, aspect kept
    bound: float = 20.0  # denseflow: [-bound, bound] -> 0..255
    rgb: bool = False  # also write img_%05d.jpg per frame
    precision: str = "tf32"
    weights: Optional[str] = None  # sha256 of the checkpoint file or of the model's state dict

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if not isinstance(self.step, int) or self.step < 1:
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


def _parse_size(s: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 256x340 (HEIGHTxWIDTH), got {s!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"--size {s}: height and width must be positive")
    return h, w


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
        from .images import to_float255

        frame = np.clip(np.rint(to_float255(frame)), 0, 255).astype(np.uint8)
    if frame.shape[:2] == tuple(size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))


def quantize_flow(flow, bound: float = 20.0):
    """denseflow's 8-bit flow: ``(x, y)`` uint8 ``(H, W)`` images, ``round((c + bound) * 255 /
    (2 * bound))`` clipped to 0..255, for c = u and v of an ``(H, W, 2)`` flow (NaN counts as 0)."""
    import numpy as np

    f = np.clip(np.nan_to_num(np.asarray(flow, dtype=np.float64), nan=0.0), -2 * bound, 2 * bound)
    q = np.clip(np.rint(255.0 * (f + bound) / (2.0 * bound)), 0, 255).astype(np.uint8)  # dense_flow's CAST
    return q[..., 0], q[..., 1]


# --------------------------------------------------------------------------------------- inputs
@dataclasses.dataclass(frozen=True)
class Job:
    path: str  # the input as given
    name: str  # its output folder, relative to out ("/"-separated with root)
    out: str  # the output root

    @property
    def source(self) -> str:  # absolute, so workers started elsewhere (Ray) read the same file
        return os.path.abspath(self.path)

    @property
    def outdir(self) -> str:
        return os.path.join(self.out, *self.name.split("/"))

    @property
    def record_path(self) -> str:
        return os.path.join(self.out, RECORD_DIR, *self.name.split("/")) + ".json"


def expand_inputs(inputs: Union[str, Sequence[str]], out: str, root: Optional[str] = None) -> List[Job]:
    """Jobs for the inputs: paths, and ``@list.txt`` files (one path a line; blank lines and lines
    starting with ``#`` skipped; relative paths relative to the current folder, as on the command
    line). Raises ValueError when two different inputs would write to the same output folder, or an
    input's output folder would be the input itself."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: List[str] = []
    for item in inputs:
        item = os.fspath(item)
        if item.startswith("@"):
            lst = item[1:]
            try:
                with open(lst, encoding="utf-8") as f:
                    lines = [ln.strip() for ln in f]
            except OSError as e:
                raise ValueError(f"cannot read the input list {lst}: {e.strerror or e}") from None
            paths += [ln for ln in lines if ln and not ln.startswith("#")]
        else:
            paths.append(item)
    if not paths:
        raise ValueError("no inputs given")
    jobs: List[Job] = []
    by_name: Dict[str, str] = {}
    seen = set()
    for p in paths:
        key = os.path.abspath(p)
        if key in seen:
            continue
        seen.add(key)
        name = _input_name(p, root)
        if name.split("/")[0] == RECORD_DIR:
            raise ValueError(f"input {p} would write into {RECORD_DIR}/, where the completion records are")
        if name in by_name:
            raise ValueError(f"two inputs would write to the same folder {os.path.join(out, name)}: "
                             f"{by_name[name]} and {p} (rename one, or pass --root to keep their folders)")
        by_name[name] = p
        job = Job(p, name, out)
        if os.path.realpath(job.outdir) == os.path.realpath(p):
            raise ValueError(f"the output folder for {p} would be the input folder itself; choose another --out")
        jobs.append(job)
    return jobs


def _input_name(path: str, root: Optional[str]) -> str:
    norm = os.path.normpath(path)
    base = norm if os.path.isdir(norm) else os.path.splitext(norm)[0]
    if root is not None:
        rel = os.path.relpath(os.path.abspath(base), os.path.abspath(root))
        if rel == "." or rel.startswith(".."):
            raise ValueError(f"input {path} is not inside --root {root}")
        return rel.replace(os.sep, "/")
    name = os.path.basename(base)
    if not name or name in (".", ".."):
        name = os.path.basename(os.path.abspath(base))
    return name


def _read_record(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def _option_changes(old: dict, new: dict) -> List[str]:
    changes = []
    for k, v in new.items():
        if k == "weights" and (old.get(k) is None or v is None):
            continue
        if old.get(k) != v:
            changes.append(f"{k} {old.get(k)} -> {v}")
    return changes


def _is_output_file(fname: str) -> bool:
    """Files an extract run writes into an input's folder (of any format), and its temporaries."""
    if TMP_TAG in fname:
        return True
    if fname == "flow.npy" or fname.endswith((".flo", ".png")):
        return True
    return fname.endswith(".jpg") and fname.startswith(("flow_x_", "flow_y_", "img_"))


def _count_outputs(outdir: str) -> int:
    try:
        return sum(1 for f in os.listdir(outdir) if _is_output_file(f) and TMP_TAG not in f)
    except OSError:
        return -1


def clear_outputs(outdir: str) -> None:
    """Remove what an interrupted or failed run left in one input's folder (flow files of every
    format, temporaries); the folder itself goes if nothing else is in it."""
    try:
        names = os.listdir(outdir)
    except FileNotFoundError:
        return
    for fname in names:
        p = os.path.join(outdir, fname)
        if _is_output_file(fname) and os.path.isfile(p):
            os.remove(p)
    try:
        os.rmdir(outdir)
    except OSError:
        pass


# -------------------------------------------------------------------------------------- writing
def _tmp_name(path: str) -> str:
    d, b = os.path.split(path)
    return os.path.join(d, f".{b}{TMP_TAG}")


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _write_one(item) -> None:
    path, write, data = item
    _atomic_write(path, lambda tmp: write(tmp, data))


def _save_jpeg(path: str, arr) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, format="JPEG", quality=JPEG_QUALITY)


def _write_json(path: str, obj) -> None:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)

    os.makedirs(os.path.dirname(path), exist_ok=True)
    _atomic_write(path, w)


class _InputState:
    """The writer's bookkeeping for the input being written."""

    def __init__(self, job: Job, t0: float):
        self.job, self.t0 = job, t0
        self.files: List[str] = []
        self.npy_part = None  # open file of raw float16 flows (npy format)
        self.npy_shape = None
        self.npy_count = 0
        self.failed = False


def _result(job: Job, status: str, reason: Optional[str] = None, frames: int = 0, pairs: int = 0,
            seconds: float = 0.0, size=None) -> dict:
    return {"input": job.path, "name": job.name, "status": status, "reason": reason, "frames": frames,
            "pairs": pairs, "seconds": round(seconds, 3), "size": list(size) if size else None}


class _Writer(threading.Thread):
    """Encodes and writes files in order; the completion record of an input is its last file."""

    def __init__(self, opts: Options, on_result: Callable[[dict], None], on_pairs: Callable[[int], None]):
        super().__init__(daemon=True, name="fastflow-extract-writer")
        self.opts, self.on_result, self.on_pairs = opts, on_result, on_pairs
        self.q: "queue.Queue" = queue.Queue(maxsize=8)
        self.state: Optional[_InputState] = None
        kill = os.environ.get(_KILL_AFTER_ENV)
        self.kill_after = int(kill) if kill else None
        self.pool = None  # threads encoding one batch's files at once (JPEG/PNG encoders drop the GIL)
        self.encoders = ENCODER_THREADS or max(1, min(4, (os.cpu_count() or 1) // 2))
        self.pairs_written = 0
        self.error: Optional[BaseException] = None

    def put(self, item) -> None:
        while True:  # a bounded wait, so a writer that died does not hang the model thread
            if self.error is not None:
                raise RuntimeError("the writer thread failed") from self.error
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self.encoders > 1:
            self.pool = ThreadPoolExecutor(self.encoders, thread_name_prefix="fastflow-extract-encode")
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                kind, job = item[0], item[1]
                st = self.state
                if kind == "start":
                    self.state = _InputState(job, item[2])
                    continue
                if st is None or st.job != job:
                    continue
                if kind == "abort":
                    self._fail(st, item[2])
                    continue
                if st.failed:
                    continue
                try:
                    if kind == "rgb":
                        self._write_rgb(st, item[2], item[3])
                    elif kind == "flows":
                        self._write_flows(st, item[2], item[3])
                    elif kind == "finish":
                        self._finish(st, item[2], item[3], item[4])
                except OSError as e:
                    self._fail(st, f"cannot write to {job.outdir}: {e.strerror or e}")
                except Exception as e:  # noqa: BLE001 - e.g. an encoder refusing the data: this input fails
                    self._fail(st, f"writing {job.outdir} failed: {_first_line(e)}")
        except BaseException as e:  # noqa: BLE001 - reported to the model thread
            self.error = e
        finally:
            if self.pool is not None:
                self.pool.shutdown()

    def _out(self, st: _InputState, fname: str) -> str:
        st.files.append(fname)
        return os.path.join(st.job.outdir, fname)

    def _write_rgb(self, st: _InputState, index: int, frame) -> None:
        _write_one((self._out(st, f"img_{index + 1:05d}.jpg"), _save_jpeg, frame))

    def _write_flows(self, st: _InputState, pairs: List[Tuple[int, str]], flows) -> None:
        import numpy as np

        from .io import write_flo, write_kitti_png

        fmt = self.opts.format
        files = []  # (path, writer, data): encoded and written in parallel, all before the next item
        for (index, stem), flow in zip(pairs, flows):
            if fmt == "flo":
                files.append((self._out(st, f"{stem}.flo"), write_flo, flow))
            elif fmt == "kitti":
                files.append((self._out(st, f"{stem}.png"), write_kitti_png, flow))
            elif fmt == "denseflow":
                x, y = quantize_flow(flow, self.opts.bound)
                files.append((self._out(st, f"flow_x_{index + 1:05d}.jpg"), _save_jpeg, x))
                files.append((self._out(st, f"flow_y_{index + 1:05d}.jpg"), _save_jpeg, y))
            else:  # npy: raw float16 now, the .npy header once the count is known
                if st.npy_part is None:
                    st.npy_part = open(os.path.join(st.job.outdir, f".flow.npy.part{TMP_TAG}"), "wb")
                    st.npy_shape = flow.shape
                st.npy_part.write(np.ascontiguousarray(flow, dtype="<f2").tobytes())
                st.npy_count += 1
        if len(files) > 1 and self.pool is not None:
            list(self.pool.map(_write_one, files))  # re-raises the first failure
        else:
            for f in files:
                _write_one(f)
        self.pairs_written += len(pairs)
        self.on_pairs(len(pairs))
        if self.kill_after is not None and self.pairs_written >= self.kill_after:
            self._test_kill()

    @staticmethod
    def _test_kill() -> None:
        once = os.environ.get(_KILL_ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)

    def _finish_npy(self, st: _InputState) -> None:
        import shutil

        import numpy as np

        part = st.npy_part.name
        st.npy_part.close()
        st.npy_part = None
        header = {"descr": "<f2", "fortran_order": False, "shape": (st.npy_count, *st.npy_shape)}

        def w(tmp):
            with open(tmp, "wb") as f, open(part, "rb") as src:
                np.lib.format.write_array_header_1_0(f, header)
                shutil.copyfileobj(src, f, 1 << 22)

        _atomic_write(self._out(st, "flow.npy"), w)
        os.remove(part)

    def _finish(self, st: _InputState, frames: int, pairs: int, size) -> None:
        from ._backend import __version__

        if self.opts.format == "npy":
            self._finish_npy(st)
        if hasattr(os, "sync"):  # the files reach the disk before the record that vouches for them
            os.sync()
        seconds = time.perf_counter() - st.t0
        record = {"input": st.job.source, "name": st.job.name, "frames": frames, "pairs": pairs,
                  "height": size[0], "width": size[1], "options": self.opts.record(), "fastflow": __version__,
                  "files": len(st.files)}
        _write_json(st.job.record_path, record)
        self.state = None
        self.on_result(_result(st.job, "done", None, frames, pairs, seconds, size))

    def _fail(self, st: _InputState, reason: str) -> None:
        st.failed = True
        if st.npy_part is not None:
            st.npy_part.close()
            st.npy_part = None
        try:
            clear_outputs(st.job.outdir)
        except OSError:
            pass
        self.state = None
        self.on_result(_result(st.job, "failed", reason, seconds=time.perf_counter() - st.t0))


# -------------------------------------------------------------------------------------- reading
def _first_line(e: BaseException) -> str:
    s = str(e)
    return s.splitlines()[0] if s else type(e).__name__


class _Reader(threading.Thread):
    """Decodes and resizes the frames of each input ahead of the model, in order."""

    def __init__(self, jobs: Sequence[Job], opts: Options, depth: int):
        super().__init__(daemon=True, name="fastflow-extract-reader")
        self.jobs, self.opts = jobs, opts
        self.q: "queue.Queue" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.skip = None  # a job the model thread gave up on: stop reading it

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._put(None)  # the model thread stops waiting, whatever happened here

    def _run(self) -> None:
        from .images import open_frames

        for job in self.jobs:
            if self.stop.is_set():
                return
            try:
                src = open_frames(job.source)
            except Exception as e:  # noqa: BLE001 - missing, unreadable, no decoder: this input fails
                if not self._put(("error", job, _first_line(e))):
                    return
                continue
            try:
                if not self._read(job, src):
                    return
            except Exception as e:  # noqa: BLE001 - any decoder failure is this input's failure
                if not self._put(("error", job, _first_line(e))):
                    return
            finally:
                try:
                    src.close()
                except Exception:  # noqa: BLE001
                    pass

    def _read(self, job: Job, src) -> bool:
        names = src.names
        if names is not None and self.opts.format in ("flo", "kitti") and len(set(names)) != len(names):
            from collections import Counter

            dup = sorted(n for n, c in Counter(names).items() if c > 1)[0]
            return self._put(("error", job, f"two frames are named {dup!r} (different extensions); "
                                            "the flow files would collide"))
        if not self._put(("start", job, src.count)):
            return False
        shape = size = None
        n = 0
        for frame in src:
            if self.skip == job:
                return True
            if frame.ndim != 3 or frame.shape[2] != 3:
                return self._put(("error", job, f"frame {n + 1} has shape {frame.shape}, not (H, W, 3)"))
            if shape is None:
                shape = frame.shape
                size = target_size(shape[0], shape[1], self.opts)
            elif frame.shape != shape:
                where = f" ({names[n]})" if names else ""
                return self._put(("error", job, f"frame {n + 1}{where} is {frame.shape[1]}x{frame.shape[0]}, "
                                                f"the first was {shape[1]}x{shape[0]}"))
            stem = names[n] if names else f"{n + 1:05d}"
            if not self._put(("frame", job, n, stem, resize_frame(frame, size))):
                return False
            n += 1
        if n < self.opts.step + 1:
            need = self.opts.step + 1
            return self._put(("error", job, f"{n} frame{'s' if n != 1 else ''}; need at least {need}"
                                            + (f" for step {self.opts.step}" if self.opts.step > 1 else "")))
        return self._put(("end", job, n, size))


# --------------------------------------------------------------------------------------- engine
class Engine:
    """One model, run over inputs in order: reader thread -> batched model -> writer thread."""

    def __init__(self, model, opts: Options, batch: int = 8, on_pairs: Optional[Callable[[int], None]] = None,
                 on_start: Optional[Callable[[Job, Optional[int]], None]] = None):
        self.model, self.opts, self.batch = model, opts, batch
        self.on_pairs = on_pairs or (lambda n: None)
        self.on_start = on_start or (lambda job, frames: None)

    def run(self, jobs: Sequence[Job], on_result: Callable[[dict], None]) -> None:
        import numpy as np

        from .api import estimate_flow

        opts = self.opts
        reader = _Reader(jobs, opts, depth=2 * self.batch + opts.step + 2)
        writer = _Writer(opts, on_result, self.on_pairs)
        reader.start()
        writer.start()
        cur: Optional[Job] = None
        window: deque = deque()
        pend_a: list = []
        pend_b: list = []
        pend_pairs: list = []
        npairs = 0
        ended: set = set()  # inputs whose finish or abort went to the writer

        def abort(job: Job, reason: str) -> None:
            if job != cur:  # failed before its first frame
                writer.put(("start", job, time.perf_counter()))
            try:
                os.remove(job.record_path)  # (overwrite) an input that fails is not finished
            except OSError:
                pass
            writer.put(("abort", job, reason))
            ended.add(job)

        def flush() -> bool:
            if not pend_a:
                return True
            try:
                flows = estimate_flow(self.model, np.stack(pend_a), np.stack(pend_b))
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: this input fails, the run goes on
                abort(cur, f"the model failed: {_first_line(e)}")
                reader.skip = cur
                return False
            writer.put(("flows", cur, list(pend_pairs), flows))
            pend_a.clear()
            pend_b.clear()
            pend_pairs.clear()
            return True

        try:
            while True:
                item = reader.q.get()
                if item is None:
                    break
                kind, job = item[0], item[1]
                if job in ended:
                    continue  # the rest of an input that already failed
                if kind == "error":
                    pend_a.clear(), pend_b.clear(), pend_pairs.clear()
                    abort(job, item[2])
                    cur = None
                    continue
                if kind == "start":
                    window.clear()
                    try:
                        if os.path.exists(job.record_path):
                            os.remove(job.record_path)  # (overwrite) not finished again until the end
                        clear_outputs(job.outdir)
                        os.makedirs(job.outdir, exist_ok=True)
                    except OSError as e:
                        abort(job, f"cannot write to {job.outdir}: {e.strerror or e}")
                        reader.skip = job
                        continue
                    cur, npairs = job, 0
                    writer.put(("start", job, time.perf_counter()))
                    self.on_start(job, item[2])
                    continue
                if job != cur:
                    continue  # the rest of an input that already failed
                if kind == "frame":
                    _, _, index, stem, frame = item
                    if opts.rgb:
                        writer.put(("rgb", job, index, frame))
                    window.append((index, stem, frame))
                    if len(window) > opts.step:
                        i, s, first = window.popleft()
                        pend_a.append(first)
                        pend_b.append(frame)
                        pend_pairs.append((i, s))
                        npairs += 1
                        if len(pend_a) >= self.batch and not flush():
                            cur = None
                elif kind == "end":
                    if flush():
                        writer.put(("finish", job, item[2], npairs, item[3]))
                        ended.add(job)
                    cur = None
                    window.clear()
            for job in jobs:  # only after a bug in the reader: every input gets a result all the same
                if job not in ended:
                    abort(job, "the frame reader stopped before this input (a bug: please report it)")
        finally:
            reader.stop.set()
            if writer.is_alive():
                try:
                    writer.put(None)
                except RuntimeError:
                    pass
                writer.join()
        if writer.error is not None:
            raise RuntimeError(f"writing flow files failed: {writer.error}") from writer.error


# ------------------------------------------------------------------------------------- progress
class _Progress:
    """A status line on stderr: a bar for the inputs, the current input's pairs, pairs/s overall
    (when stderr is not a terminal: one line per finished input instead)."""

    def __init__(self, total_inputs: int, step: int, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total_inputs, self.step = total_inputs, step
        self.inputs = self.pairs = 0
        self.current: Optional[str] = None
        self.current_pairs = 0
        self.current_total: Optional[int] = None
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.lock = threading.Lock()

    def _line(self) -> str:
        width = 20
        fill = int(width * self.inputs / max(1, self.total_inputs))
        rate = self.pairs / max(1e-9, time.perf_counter() - self.t0)
        cur = ""
        if self.current is not None:
            tot = f"/{self.current_total}" if self.current_total else ""
            cur = f" | {self.current} {self.current_pairs}{tot} pairs"
        return (f"[{'#' * fill}{'-' * (width - fill)}] {self.inputs}/{self.total_inputs} inputs{cur} | "
                f"{self.pairs} pairs, {rate:.1f} pairs/s")

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.tty and (force or now - self.last > 0.1):
            self.last = now
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.stream.flush()

    def start_input(self, job: Job, frames: Optional[int]) -> None:
        with self.lock:
            self.current, self.current_pairs = job.name, 0
            self.current_total = frames - self.step if frames and frames > self.step else None
            self._draw(force=True)

    def add_pairs(self, n: int) -> None:
        with self.lock:
            self.pairs += n
            self.current_pairs += n
            self._draw()

    def input_done(self, res: dict) -> None:
        with self.lock:
            self.inputs += 1
            if res["name"] == self.current:
                self.current = None
            if not self.enabled:
                return
            what = res["status"] + (f": {res['reason']}" if res.get("reason") else "")
            if self.tty:
                self.stream.write("\r\x1b[K")
            self.stream.write(f"{res['input']}: {what}\n")
            self._draw(force=True)
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------ the model
def _build_model(spec, device: str, precision: str):
    """The model from ``spec`` (a checkpoint path, or a module to use as it is) on ``device``."""
    from . import precision as _precision
    from .load import load_model, resolve_device

    if isinstance(spec, str):
        return load_model(spec, device, precision)
    model = spec.to(resolve_device(device)).eval() if device not in (None, "auto") else spec.eval()
    return _precision.apply(model, _precision.resolve(precision, next(model.parameters()).device))


def _weights_id(spec) -> str:
    h = hashlib.sha256()
    if isinstance(spec, str):
        with open(spec, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        return "file:" + h.hexdigest()
    for k, v in spec.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return "state:" + h.hexdigest()


def _devices(device: str, n: int) -> List[str]:
    """One device per worker: GPUs round robin for auto/cuda, else the device given."""
    import torch

    if device in (None, "auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(n)]
    if device in (None, "auto"):
        return ["cpu"] * n
    return [device] * n


# ----------------------------------------------------------------------- local worker processes
_WORKER: Dict[str, object] = {}


def _pool_init(spec, devq, progq, precision, opts, batch, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    device = devq.get()
    model = _build_model(spec, device, precision)
    _WORKER["engine"] = Engine(model, opts, batch, on_pairs=progq.put)


def _pool_run(job: Job) -> dict:
    out: List[dict] = []
    _WORKER["engine"].run([job], out.append)
    return out[0]


def _run_pool(todo, spec, device, precision, opts, batch, workers, progress, results) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    workers = min(workers, len(todo))
    devs = _devices(device, workers)
    devq, progq = ctx.Queue(), ctx.Queue()
    for d in devs:
        devq.put(d)
    threads = max(1, (os.cpu_count() or 1) // workers) if devs[0] == "cpu" else None

    def drain():
        try:
            while True:
                progress.add_pairs(progq.get_nowait())
        except queue.Empty:
            pass

    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init,
                             initargs=(spec, devq, progq, precision, opts, batch, threads))
    try:
        futs = {ex.submit(_pool_run, job): job for job in todo}
        pending = set(futs)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                job = futs[fut]
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker process died or could not start
                    clear_outputs(job.outdir)
                    res = _result(job, "failed", f"worker process failed: {_first_line(e) or type(e).__name__}")
                results.append(res)
                progress.input_done(res)
        drain()
    except BaseException:  # Ctrl-C: drop the queued inputs instead of running them all first
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown()


# ------------------------------------------------------------------------------------------ ray
class _RayWorker:
    """A Ray actor: one model, inputs one at a time."""

    def __init__(self, spec, device, precision, opts, batch, threads):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.engine = Engine(_build_model(spec, device, precision), opts, batch)

    def run(self, job: Job) -> dict:
        out: List[dict] = []
        self.engine.run([job], out.append)
        return out[0]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_HELP) from None
    return ray


def _run_ray(todo, spec, address, device, precision, opts, batch, workers, progress, results) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kw = {} if address in (None, True, "") else {"address": address}
        ray.init(include_dashboard=False, log_to_driver=False, **kw)
        started = True
    try:
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
        if str(device).startswith("cuda") and gpus == 0:
            raise ValueError(f"--device {device}, but the Ray cluster has no GPU (use --device cpu or auto)")
        use_gpu = gpus > 0 and device != "cpu"
        n = workers or (gpus if use_gpu else max(1, cpus // 4))
        n = max(1, min(n, len(todo)))
        if use_gpu:
            actor_opts = {"num_gpus": 1, "num_cpus": 1}
            dev, threads = "cuda", None
        else:
            node_cpus = max([int(nd["Resources"].get("CPU", 0)) for nd in ray.nodes() if nd.get("Alive")] or [1])
            per = max(1, min(node_cpus, cpus // n))
            actor_opts = {"num_cpus": per}
            dev, threads = "cpu", per
        spec = ray.put(spec)  # the module (loaded by the driver), shipped once, resolved in each actor
        cls = ray.remote(max_restarts=2, max_task_retries=2, **actor_opts)(_RayWorker)

        def new_actor():
            return cls.remote(spec, dev, precision, opts, batch, threads)

        actors = [new_actor() for _ in range(n)]
        spare = 2 * n  # actors that died for good are replaced this many times in all
        waiting = deque(todo)
        running: Dict[object, Tuple[object, Job]] = {}

        def submit(actor) -> None:
            if waiting:
                job = waiting.popleft()
                running[actor.run.remote(job)] = (actor, job)

        for a in actors:
            submit(a)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - retries exhausted: this input fails
                clear_outputs(job.outdir)
                r = _result(job, "failed", f"Ray task failed after retries: {_first_line(e)[:300]}")
                if isinstance(e, ray.exceptions.RayActorError):
                    actor = None
                    if spare > 0:
                        spare -= 1
                        actor = new_actor()
            results.append(r)
            progress.add_pairs(r["pairs"])
            progress.input_done(r)
            if actor is not None:
                submit(actor)
        for job in waiting:  # every actor died
            r = _result(job, "failed", "no Ray worker left to run it")
            results.append(r)
            progress.input_done(r)
    finally:
        if started:
            ray.shutdown()


def _run(todo, spec, out, ray, device, precision, opts, batch, workers, prog, results) -> None:
    """Compute the inputs in ``todo``: here, in worker processes, or on Ray."""
    use_ray = ray not in (None, False)
    if not use_ray and device not in (None, "auto"):
        from .load import resolve_device

        resolve_device(device)
    shipped = use_ray or (workers or 1) > 1  # the module goes to other processes, from the CPU
    if isinstance(spec, str):  # load (and so check) it once, here
        try:
            spec = _build_model(spec, "cpu" if shipped else device, precision)
        except Exception as e:  # noqa: BLE001 - CLIError and checkpoint errors alike
            raise ValueError(_first_line(e)) from None
    elif shipped and any(p.device.type != "cpu" for p in spec.parameters()):
        import copy

        spec = copy.deepcopy(spec).cpu()
    os.makedirs(out, exist_ok=True)
    if use_ray:
        _run_ray(todo, spec, ray, device, precision, opts, batch, workers, prog, results)
    elif workers and workers > 1:
        _run_pool(todo, spec, device, precision, opts, batch, workers, prog, results)
    else:
        model = spec if device in (None, "auto") else _build_model(spec, device, precision)

        def on_result(r):
            results.append(r)
            prog.input_done(r)

        Engine(model, opts, batch, on_pairs=prog.add_pairs, on_start=prog.start_input).run(todo, on_result)


# ------------------------------------------------------------------------------------- the API
def extract(inputs, out, *, checkpoint: Optional[str] = None, model=None, format: str = "flo", step: int = 1,
            size: Optional[Tuple[int, int]] = None, short_side: Optional[int] = None, bound: float = 20.0,
            rgb: bool = False, batch: int = 8, device: str = "auto", precision: Optional[str] = None,
            workers: Optional[int] = None, ray=None, root: Optional[str] = None, overwrite: bool = False,
            report: Optional[str] = None, progress: bool = False) -> dict:
    """Compute flow for every input (video file, folder of frames, or ``@list.txt``) into ``out``.

    See the module docstring for the layout, formats and resume rules. The model is ``model``
    (a ``FlowNet2S``, used as it is) or loaded from ``checkpoint`` (default ``$FASTFLOW_CHECKPOINT``)
    on ``device`` in ``precision``. ``workers``: local processes (or Ray actors with ``ray``);
    ``ray``: True (a local Ray, or the one ``ray.init`` finds) or a cluster address.

    Bad inputs do not stop the run. Returns the summary: ``inputs``, ``done``, ``skipped`` (finished
    by an earlier run), ``failed``, ``frames``, ``pairs`` (computed in this run), ``seconds``,
    ``pairs_per_s``, and ``results`` (one dict per input: ``input``, ``name``, ``status``,
    ``reason``, ``frames``, ``pairs``, ``seconds``, ``size``). ``report``: also write it as JSON.
    Raises ValueError for bad options.
    """
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if size is not None:
        size = _parse_size(size) if isinstance(size, str) else tuple(int(v) for v in size)
    from . import precision as _precision

    if model is None:
        from .load import find_checkpoint

        try:
            spec = find_checkpoint(checkpoint)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
    else:
        spec = model
        precision = _precision.of(model)  # the same names as the checkpoint path records
    if ray in (None, False):  # the device runs here: record what the precision runs as on it
        from .load import resolve_device

        precision = _precision.resolve(precision, resolve_device(device))
    elif precision is not None:
        _precision.check(precision)
    else:
        precision = "tf32"  # Ray workers on GPUs: PyTorch's default for float32 there
    opts = Options(format, step, size, short_side, float(bound), bool(rgb), precision)
    opts.validate()
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder")
    if report is not None and (os.path.isdir(report) or not os.path.isdir(os.path.dirname(os.path.abspath(report)))):
        raise ValueError(f"--report {report}: " + ("is a folder" if os.path.isdir(report) else "its folder does not exist"))
    jobs = expand_inputs(inputs, out, root)
    opts = dataclasses.replace(opts, weights=_weights_id(spec))
    want = opts.record()

    results: List[dict] = []
    todo: List[Job] = []
    for job in jobs:
        rec = _read_record(job.record_path)
        if rec is None or rec.get("files") != _count_outputs(job.outdir):
            todo.append(job)  # unfinished, or files of a finished one were removed since: redo
            continue
        changes = _option_changes(rec.get("options", {}), want)
        if not changes:
            results.append(_result(job, "skipped", "finished earlier", rec.get("frames", 0), 0, 0.0,
                                   (rec.get("height"), rec.get("width"))))
        elif overwrite:
            todo.append(job)
        else:
            results.append(_result(job, "failed", "finished earlier with other options (" + ", ".join(changes)
                                   + "); pass --overwrite to redo it, or use another --out"))
    if ray not in (None, False):
        _import_ray()
    prog = _Progress(len(jobs), step, progress)
    try:
        for r in results:
            prog.input_done(r)
        if todo:
            _run(todo, spec, out, ray, device, precision, opts, batch, workers, prog, results)
    finally:
        prog.close()
    order = {j.name: i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order.get(r["name"], 0))
    done = [r for r in results if r["status"] == "done"]
    seconds = time.perf_counter() - t0
    pairs = sum(r["pairs"] for r in done)
    summary = {
        "inputs": len(jobs),
        "done": len(done),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": sum(r["status"] == "failed" for r in results),
        "frames": sum(r["frames"] for r in done),
        "pairs": pairs,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(pairs / seconds, 3) if seconds > 0 else 0.0,
        "options": {k: v for k, v in want.items() if k != "weights"},
        "results": results,
    }
    if report is not None:
        _write_json(os.path.abspath(report), summary)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"extract: {s['inputs']} inputs: {s['done']} done, {s['skipped']} skipped (finished earlier), "
             f"{s['failed']} failed; {s['frames']} frames, {s['pairs']} pairs in {s['seconds']:.1f} s "
             f"({s['pairs_per_s']:.2f} pairs/s)"]
    for r in s["results"]:
        if r["status"] == "failed":
            lines.append(f"  failed: {r['input']}: {r['reason']}")
    return "\n".join(lines)
