"""``extract(workers=N)``: N local worker processes (:mod:`fastflow.extraction.worker`), inputs
handed out as workers free up.

Workers are fresh interpreters started with ``subprocess`` (not multiprocessing): nothing of the
caller is re-imported or forked, they import the driver's own ``fastflow``, and they die with the
parent (see worker.py). A worker that dies mid-input is replaced and its input retried once (its
partial files cleared through the input's journal); a second death fails that input only. On an
exception in the parent (Ctrl-C, SIGTERM through ``extract``'s handler) every worker is stopped
before it propagates."""
from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Dict, List, Optional

from .messages import WorkerFailed, WorkerPairs, WorkerReady, WorkerResult
from .record import clear_own
from .worker import BOOT, WorkerConfig, recv, send
from .writer import result

__all__ = ["run_pool", "devices"]

RETRIES = 1


def devices(device: str, n: int) -> List[str]:
    """One device per worker: GPUs round robin for auto/cuda, else the device given."""
    import torch

    if device in (None, "auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(n)]
    if device in (None, "auto"):
        return ["cpu"] * n
    return [device] * n


class _Worker:
    def __init__(self, wid: int, cfg: WorkerConfig, events: "queue.Queue"):
        import fastflow

        root = os.path.dirname(os.path.dirname(os.path.abspath(fastflow.__file__)))
        self.wid, self.job, self.ready = wid, None, False
        self.p = subprocess.Popen([sys.executable, "-c", BOOT, root, str(os.getpid())], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, close_fds=True)
        send(self.p.stdin, cfg)
        self.thread = threading.Thread(target=self._read, args=(events,), daemon=True,
                                       name=f"fastflow-extract-worker-{wid}")
        self.thread.start()

    def _read(self, events: "queue.Queue") -> None:
        while True:
            try:
                msg = recv(self.p.stdout)
            except Exception:  # noqa: BLE001 - a torn message: the worker died mid-write
                msg = None
            events.put((self, msg))
            if msg is None:
                return

    def give(self, job, note) -> None:
        self.job = job
        send(self.p.stdin, (job, note))

    def stop(self, graceful: bool) -> None:
        try:
            if graceful:
                send(self.p.stdin, "stop")
            self.p.stdin.close()
        except OSError:
            pass
        if not graceful:
            self.p.kill()


def _stop_all(workers, graceful: bool) -> None:
    for w in workers:
        w.stop(graceful)
    deadline = time.monotonic() + (10.0 if graceful else 5.0)
    for w in workers:
        try:
            w.p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.p.kill()
            w.p.wait()
        w.thread.join(timeout=1.0)
        try:
            w.p.stdout.close()
        except OSError:
            pass


def run_pool(todo, model, device, precision, opts, batch, workers, progress, results,
             notes: Dict[str, str]) -> None:
    """Run ``todo`` on ``workers`` processes, each with a copy of ``model`` (a module on the CPU)
    in ``precision`` (as asked; resolved for each worker's device)."""
    import torch

    buf = io.BytesIO()
    torch.save(model, buf)
    blob = buf.getvalue()
    n = min(workers, len(todo))
    devs = devices(device, n)
    threads = max(1, (os.cpu_count() or 1) // n) if devs[0] == "cpu" else None
    events: "queue.Queue" = queue.Queue()
    waiting = deque((job, 0) for job in todo)
    tries: Dict[str, int] = {}
    live: List[_Worker] = []
    spare = 2 * n  # replacements in all (a worker that cannot even start must not respawn forever)

    def spawn(k: int) -> _Worker:
        cfg = WorkerConfig(blob, devs[k % len(devs)], precision, opts, batch, threads)
        w = _Worker(k, cfg, events)
        live.append(w)
        return w

    def finish(r: dict) -> None:
        results.append(r)
        progress.input_done(r)

    def hand_out(w: _Worker) -> None:
        if waiting:
            job, _ = waiting.popleft()
            progress.start_input(job, None)
            w.give(job, notes.get(job.name))
        else:
            w.job = None

    ok = False
    try:
        for k in range(n):
            spawn(k)
        fatal: Optional[str] = None
        while any(w.job is not None or not w.ready for w in live) and live:
            try:
                w, msg = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if w not in live:
                continue  # the end of a worker already stopped (it failed to start)
            if isinstance(msg, WorkerPairs):
                progress.add_pairs(msg.n)
            elif isinstance(msg, WorkerReady):
                w.ready = True
                hand_out(w)
            elif isinstance(msg, WorkerResult):
                finish(msg.result)
                hand_out(w)
            elif isinstance(msg, WorkerFailed):
                fatal = fatal or msg.reason
                live.remove(w)
                w.stop(graceful=False)
            elif msg is None:  # the worker process died
                live.remove(w)
                code = w.p.wait()
                job = w.job
                if job is not None:
                    clear_own(job)  # what it wrote of the input: its journal names the files
                    tries[job.name] = tries.get(job.name, 0) + 1
                    if tries[job.name] <= RETRIES:
                        waiting.appendleft((job, tries[job.name]))
                    else:
                        finish(result(job, "failed",
                                      f"the worker process died twice on this input (exit code {code})"))
                if waiting and spare > 0:
                    spare -= 1
                    spawn(w.wid)
                elif waiting and not fatal:
                    fatal = f"worker processes kept dying (the last with exit code {code})"
            if not live:
                break
        while waiting:  # every worker failed to start
            job, _ = waiting.popleft()
            finish(result(job, "failed", f"worker process failed: {fatal or 'no worker process left to run it'}"))
        ok = True
    finally:
        _stop_all(list(live), graceful=ok)
