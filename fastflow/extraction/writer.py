"""The writer thread: encodes and writes an input's files in order (a batch's files in parallel),
journals each name before the file is created, and writes the completion record last."""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, List, Optional

from . import testhooks
from .files import TMP_TAG, atomic_write, flow_files, save_jpeg, write_one
from .jobs import Job
from .messages import WriteAbort, WriteFinish, WriteFlows, WriteRgb, WriteStart
from .options import Options
from .reader import first_line
from .record import Journal, clear_own, write_record

__all__ = ["Writer", "result", "ENCODER_THREADS", "foreign_reason"]

ENCODER_THREADS: Optional[int] = None  # threads writing a batch's files; None: half the cores, 1..4


def result(job: Job, status: str, reason: Optional[str] = None, frames: int = 0, pairs: int = 0,
           seconds: float = 0.0, size=None) -> dict:
    """One input's entry in the summary."""
    return {"input": job.path, "name": job.name, "status": status, "reason": reason, "frames": frames,
            "pairs": pairs, "seconds": round(seconds, 3), "size": list(size) if size else None}


def foreign_reason(job: Job, name: str) -> str:
    return (f"{os.path.join(job.outdir, name)} exists and fastflow did not write it (it is left alone, and so "
            "is every other file of yours there): move it away, or use another --out")


class _Collision(Exception):
    """A file to write exists and is not this run's: the user's own."""


class _InputState:
    """The writer's bookkeeping for the input being written."""

    def __init__(self, msg: WriteStart):
        self.job, self.t0, self.identity = msg.job, msg.t0, msg.identity
        self.files: List[str] = []
        # identity None: an input refused before it started; it writes nothing and clears nothing
        self.journal = Journal(msg.job) if msg.identity is not None else None
        self.npy_part = None  # open file of raw float16 flows (npy format)
        self.npy_shape = None
        self.npy_count = 0


class Writer(threading.Thread):
    """Consumes ``Write*`` messages; reports each input's result dict through ``on_result``."""

    def __init__(self, opts: Options, on_result: Callable[[dict], None], on_pairs: Callable[[int], None],
                 note: Optional[Callable[[Job], Optional[str]]] = None):
        super().__init__(daemon=True, name="fastflow-extract-writer")
        self.opts, self.on_result, self.on_pairs = opts, on_result, on_pairs
        self.note = note or (lambda job: None)
        self.q: "queue.Queue" = queue.Queue(maxsize=8)
        self.state: Optional[_InputState] = None
        self.pool = None  # threads encoding one batch's files at once (JPEG/PNG encoders drop the GIL)
        from . import writer as _self

        self.encoders = _self.ENCODER_THREADS or max(1, min(4, (os.cpu_count() or 1) // 2))
        self.pairs_written = 0
        self.error: Optional[BaseException] = None
        self.abandon = threading.Event()  # interrupted: drop what is queued, leave the journal for the rerun

    def put(self, item) -> None:
        while True:  # a bounded wait, so a writer that died does not hang the model thread
            if self.error is not None:
                raise RuntimeError("the writer thread failed") from self.error
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.abandon.is_set():
                    return
                continue

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self.encoders > 1:
            self.pool = ThreadPoolExecutor(self.encoders, thread_name_prefix="fastflow-extract-encode")
        try:
            while not self.abandon.is_set():
                msg = self.q.get()
                if msg is None or self.abandon.is_set():
                    return
                self._handle(msg)
        except BaseException as e:  # noqa: BLE001 - reported to the model thread
            self.error = e
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            if self.state is not None and self.state.journal is not None:
                self.state.journal.close()

    def _handle(self, msg) -> None:
        if isinstance(msg, WriteStart):
            self.state = _InputState(msg)
            return
        st = self.state
        if st is None or st.job != msg.job:
            return
        if isinstance(msg, WriteAbort):
            self._fail(st, msg.reason)
            return
        try:
            if isinstance(msg, WriteRgb):
                self._write(st, [(f"img_{msg.index + 1:05d}.jpg", save_jpeg, msg.image)])
            elif isinstance(msg, WriteFlows):
                self._write_flows(st, msg)
            elif isinstance(msg, WriteFinish):
                self._finish(st, msg)
        except _Collision as e:
            self._fail(st, str(e))
        except OSError as e:
            self._fail(st, f"cannot write to {st.job.outdir}: {e.strerror or e}")
        except Exception as e:  # noqa: BLE001 - e.g. an encoder refusing the data: this input fails
            self._fail(st, f"writing {st.job.outdir} failed: {first_line(e)}")

    def _check_free(self, st: _InputState, names) -> None:
        """Earlier runs' files were cleared at the start: a name taken now is someone else's file."""
        for name in names:
            if name not in st.files and os.path.lexists(os.path.join(st.job.outdir, name)):
                raise _Collision(foreign_reason(st.job, name))

    def _write(self, st: _InputState, files) -> None:
        self._check_free(st, [name for name, _, _ in files])
        st.journal.add([name for name, _, _ in files])  # on disk before any of them exists
        st.files += [name for name, _, _ in files]
        items = [(os.path.join(st.job.outdir, name), w, data) for name, w, data in files]
        if len(items) > 1 and self.pool is not None:
            list(self.pool.map(write_one, items))  # re-raises the first failure
        else:
            for it in items:
                write_one(it)

    def _write_flows(self, st: _InputState, msg: WriteFlows) -> None:
        import numpy as np

        if self.opts.format == "npy":  # raw float16 now, the .npy header once the count is known
            if st.npy_part is None:
                self._check_free(st, ["flow.npy"])
                st.journal.add(["flow.npy"])
                st.npy_part = open(os.path.join(st.job.outdir, f".flow.npy.part{TMP_TAG}"), "wb")
                st.npy_shape = msg.flows[0].shape
            for flow in msg.flows:
                st.npy_part.write(np.ascontiguousarray(flow, dtype="<f2").tobytes())
                st.npy_count += 1
        else:
            files = []
            for pair, flow in zip(msg.pairs, msg.flows):
                files += flow_files(self.opts.format, pair.index, pair.stem, flow, self.opts.bound)
            self._write(st, files)
        self.pairs_written += len(msg.pairs)
        self.on_pairs(len(msg.pairs))
        testhooks.after_pairs(self.pairs_written)

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

        atomic_write(os.path.join(st.job.outdir, "flow.npy"), w)
        st.files.append("flow.npy")
        os.remove(part)

    def _finish(self, st: _InputState, msg: WriteFinish) -> None:
        from .. import __version__

        if self.opts.format == "npy" and st.npy_part is not None:
            self._finish_npy(st)
        if hasattr(os, "sync"):  # the files reach the disk before the record that vouches for them
            os.sync()
        seconds = time.perf_counter() - st.t0
        ident = dict(st.identity, frames=msg.frames)
        record = {"input": st.job.source, "name": st.job.name, "frames": msg.frames, "pairs": msg.pairs,
                  "height": msg.size[0], "width": msg.size[1], "options": self.opts.record(), "fastflow": __version__,
                  "files": st.files, "input_identity": ident}
        write_record(st.job, record)
        st.journal.close()
        try:
            os.remove(st.job.journal_path)
        except FileNotFoundError:
            pass
        self.state = None
        self.on_result(result(st.job, "done", self.note(st.job), msg.frames, msg.pairs, seconds, msg.size))

    def _fail(self, st: _InputState, reason: str) -> None:
        if st.npy_part is not None:
            st.npy_part.close()
            st.npy_part = None
        if st.journal is not None:
            st.journal.close()
            try:
                clear_own(st.job)
            except OSError:
                pass
        self.state = None
        self.on_result(result(st.job, "failed", reason, seconds=time.perf_counter() - st.t0))
