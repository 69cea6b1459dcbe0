"""One model run over inputs in order: reader thread -> batched ``estimate_flow`` -> writer thread."""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Callable, Dict, Optional, Sequence

from .jobs import Job
from .messages import (Frame, InputEnd, InputError, InputStart, PairId, WriteAbort, WriteFinish, WriteFlows,
                       WriteRgb, WriteStart)
from .options import Options
from .reader import Reader, first_line
from .record import clear_own, identity, own_files
from .writer import Writer

__all__ = ["Engine"]


class Engine:
    """One model, run over inputs in order. ``notes``: a note per input name for its result (e.g.
    why a finished input is redone)."""

    def __init__(self, model, opts: Options, batch: int = 8, on_pairs: Optional[Callable[[int], None]] = None,
                 on_start: Optional[Callable[[Job, Optional[int]], None]] = None,
                 notes: Optional[Dict[str, str]] = None):
        self.model, self.opts, self.batch = model, opts, batch
        self.on_pairs = on_pairs or (lambda n: None)
        self.on_start = on_start or (lambda job, frames: None)
        self.notes = dict(notes or {})

    def run(self, jobs: Sequence[Job], on_result: Callable[[dict], None]) -> None:
        import numpy as np

        from ..api import estimate_flow

        opts = self.opts
        reader = Reader(jobs, opts, depth=2 * self.batch + opts.step + 2)
        writer = Writer(opts, on_result, self.on_pairs, note=lambda job: self.notes.get(job.name))
        reader.start()
        writer.start()
        cur: Optional[Job] = None
        window: deque = deque()
        pend_a: list = []
        pend_b: list = []
        pend_pairs: list = []
        npairs = 0
        ended: set = set()  # inputs whose finish or abort went to the writer

        def abort(job: Job, reason: str, started: bool = True) -> None:
            if job != cur or not started:  # failed before its first frame
                writer.put(WriteStart(job, time.perf_counter(), None))
            writer.put(WriteAbort(job, reason))
            ended.add(job)

        def flush() -> bool:
            if not pend_a:
                return True
            try:
                flows = estimate_flow(self.model, np.stack(pend_a), np.stack(pend_b))
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: this input fails, the run goes on
                abort(cur, f"the model failed: {first_line(e)}")
                reader.skip = cur
                return False
            writer.put(WriteFlows(cur, list(pend_pairs), flows))
            pend_a.clear()
            pend_b.clear()
            pend_pairs.clear()
            return True

        ok = False
        try:
            while True:
                msg = reader.q.get()
                if msg is None:
                    break
                job = msg.job
                if job in ended:
                    continue  # the rest of an input that already failed
                if isinstance(msg, InputError):
                    pend_a.clear(), pend_b.clear(), pend_pairs.clear()
                    abort(job, msg.reason)
                    cur = None
                    continue
                if isinstance(msg, InputStart):
                    window.clear()
                    reason = self._prepare(job)
                    if reason:
                        abort(job, reason, started=False)
                        reader.skip = job
                        cur = None
                        continue
                    cur, npairs = job, 0
                    writer.put(WriteStart(job, time.perf_counter(), identity(job.source)))
                    self.on_start(job, msg.frames)
                    continue
                if job != cur:
                    continue  # the rest of an input that already failed
                if isinstance(msg, Frame):
                    if opts.rgb:
                        writer.put(WriteRgb(job, msg.index, msg.image))
                    window.append((msg.index, msg.stem, msg.image))
                    if len(window) > opts.step:
                        i, s, first = window.popleft()
                        pend_a.append(first)
                        pend_b.append(msg.image)
                        pend_pairs.append(PairId(i, s))
                        npairs += 1
                        if len(pend_a) >= self.batch and not flush():
                            cur = None
                elif isinstance(msg, InputEnd):
                    if flush():
                        writer.put(WriteFinish(job, msg.frames, npairs, msg.size))
                        ended.add(job)
                    cur = None
                    window.clear()
            for job in jobs:  # only after a bug in the reader: every input gets a result all the same
                if job not in ended:
                    abort(job, "the frame reader stopped before this input (a bug: please report it)", started=False)
            ok = True
        finally:
            reader.stop.set()
            if not ok:  # interrupted: drop the queue; the journal tells the rerun what to clear
                writer.abandon.set()
            if writer.is_alive():
                try:
                    writer.put(None)
                except RuntimeError:
                    pass
                writer.join(timeout=None if ok else 5.0)
        if writer.error is not None:
            raise RuntimeError(f"writing flow files failed: {writer.error}") from writer.error

    @staticmethod
    def _prepare(job: Job) -> Optional[str]:
        """Clear what earlier runs of this input wrote (files of others stay: the writer fails the
        input rather than overwrite one); the reason it cannot start, or None."""
        try:
            clear_own(job, own_files(job))
            os.makedirs(job.outdir, exist_ok=True)
        except OSError as e:
            return f"cannot write to {job.outdir}: {e.strerror or e}"
        return None
