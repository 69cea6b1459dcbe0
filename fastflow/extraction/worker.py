"""A local worker process of ``extract(workers=N)``: a fresh interpreter (never a fork of the
caller, never a re-import of the caller's script, so no ``__main__`` guard is needed) started by
:mod:`fastflow.extraction.pool` as

    python -c "<BOOT>" PACKAGE_PARENT PARENT_PID

with the folder holding the driver's ``fastflow`` first on ``sys.path`` (the same package as the
driver, wherever the driver runs). It reads a :class:`WorkerConfig` and then jobs from stdin and
answers on its original stdout (fd 1 is pointed at stderr, so nothing else can write there).

It dies with its parent: Linux's parent-death signal (SIGKILL), and everywhere a thread that exits
the process when stdin reaches end-of-file (the parent is gone) without a stop message. Ctrl-C in a
terminal goes to the whole process group; workers ignore SIGINT and leave stopping to the parent.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import signal
import struct
import sys
import threading
import queue
from typing import Optional

from .messages import WorkerFailed, WorkerPairs, WorkerReady, WorkerResult
from .options import Options

__all__ = ["WorkerConfig", "BOOT", "send", "recv", "main"]

BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from fastflow.extraction.worker import main; main(int(sys.argv[2]))")


@dataclasses.dataclass
class WorkerConfig:
    model: bytes  # torch.save of the module, on the CPU
    device: str
    precision: Optional[str]  # as asked (None: the device's default), resolved for the worker's device
    opts: Options
    batch: int
    threads: Optional[int]


def send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def recv(f):
    """The next object, or None at end-of-file."""
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _build(cfg: WorkerConfig):
    import torch

    from .. import precision as prec

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    model = torch.load(io.BytesIO(cfg.model), weights_only=False)  # the parent's own module
    return prec.apply(model.to(dev).eval(), prec.resolve(cfg.precision, dev))


def main(parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the message stream
    sys.stdout = sys.stderr
    inbox: "queue.Queue" = queue.Queue()
    stdin = sys.stdin.buffer

    def watch() -> None:
        while True:
            msg = recv(stdin)
            if msg is None:  # the parent is gone (or closed the pipe without saying stop)
                os._exit(1)
            inbox.put(msg)
            if msg == "stop":
                return

    threading.Thread(target=watch, daemon=True, name="fastflow-worker-watch").start()
    lock = threading.Lock()

    def reply(obj) -> None:
        with lock:
            send(out, obj)

    from .. import __file__ as pkg
    from .engine import Engine

    cfg = inbox.get()
    try:
        engine = Engine(_build(cfg), cfg.opts, cfg.batch, on_pairs=lambda n: reply(WorkerPairs(n)))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the inputs with it
        reply(WorkerFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
        return
    reply(WorkerReady(os.path.dirname(pkg)))
    while True:
        msg = inbox.get()
        if not isinstance(msg, tuple):
            return
        job, note = msg
        results = []
        engine.notes = {job.name: note} if note else {}
        engine.run([job], results.append)
        reply(WorkerResult(results[0]))
