"""``fastflow.extract``: options checked, the model loaded once, the output folder locked, finished
inputs skipped, the rest computed here, in worker processes or on Ray; the summary."""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from typing import List, Optional, Tuple

from .jobs import RECORD_DIR, Job, expand_inputs
from .lock import OutputLock
from .options import Options, parse_size, plural
from .progress import Progress
from .record import identity, identity_changes, is_finished, option_changes, read_record
from .writer import result

__all__ = ["extract", "format_summary", "ExtractInterrupted"]


class ExtractInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; workers are stopped, finished inputs are kept and a
    rerun of the same command resumes. ``signum``: the signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        return self.message


class _Signals:
    """SIGTERM raises :class:`ExtractInterrupted` in the main thread for the run (SIGINT already
    raises KeyboardInterrupt); the previous handlers come back afterwards."""

    def __init__(self):
        self.active = threading.current_thread() is threading.main_thread()
        self.old = {}
        self.received: Optional[int] = None  # (Ray's wait turns the exception into a plain KeyboardInterrupt)

    def install(self) -> None:
        if not self.active:
            return

        def handler(signum, frame):
            self.received = signum
            raise ExtractInterrupted(signum)

        for sig in (signal.SIGTERM,):
            old = signal.signal(sig, handler)
            self.old.setdefault(sig, old)

    def restore(self) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


def _check_out(out: str) -> bool:
    """ValueError when ``out`` cannot be a folder; True if it does not exist yet."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file, not a folder; give a folder (it is created if missing)")
        return False
    parent = os.path.dirname(out)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"--out {out}: {parent} is a file, not a folder; give a folder path")
    return True


def _weights_id(model) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return "state:" + h.hexdigest()


def extract(inputs, out, *, checkpoint: Optional[str] = None, model=None, random_weights: bool = False,
            format: str = "flo", step: int = 1, size: Optional[Tuple[int, int]] = None,
            short_side: Optional[int] = None, bound: float = 20.0, rgb: bool = False, batch: int = 8,
            device: str = "auto", precision: Optional[str] = None, workers: Optional[int] = None, ray=None,
            root: Optional[str] = None, overwrite: bool = False, report: Optional[str] = None,
            progress: bool = False) -> dict:
    """Compute flow for every input (video file, folder of frames, or ``@list.txt``) into ``out``.

    See :mod:`fastflow.extraction` for the layout, formats, resume and safety rules. The model is
    ``model`` (a ``FlowNet2S``, in its own precision unless ``precision`` is given), or loaded from
    ``checkpoint`` (default ``$FASTFLOW_CHECKPOINT``), or with ``random_weights=True`` random weights
    from a fixed seed (for trying it out; the record says so). ``precision``: fp32 | tf32 | fp16 |
    bf16 (None: tf32 on CUDA, fp32 on a CPU; see :mod:`fastflow.precision`). ``workers``: local
    processes (or Ray actors with ``ray``); ``ray``: True (a local Ray, or the one ``ray.init``
    finds) or a cluster address.

    Bad inputs do not stop the run. Returns the summary: ``inputs``, ``done``, ``skipped`` (finished
    by an earlier run), ``failed``, ``frames``, ``pairs`` (computed in this run), ``seconds``,
    ``pairs_per_s``, ``options`` and ``results`` (one dict per input: ``input``, ``name``,
    ``status``, ``reason``, ``frames``, ``pairs``, ``seconds``, ``size``). ``report``: also write it
    as JSON. Raises ValueError for bad options, FileNotFoundError / CheckpointError for the
    checkpoint, :class:`OutputInUseError` (an OSError) when another run holds ``out``, and
    :class:`ExtractInterrupted` (a KeyboardInterrupt) on SIGINT / SIGTERM.
    """
    from .. import precision as prec

    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if size is not None:
        size = parse_size(size) if isinstance(size, str) else tuple(int(v) for v in size)
    if precision is not None:
        prec.check(precision)
    use_ray = ray not in (None, False)
    pool = not use_ray and (workers or 1) > 1
    Options(format, step, size, short_side, float(bound), bool(rgb)).validate()
    created = _check_out(out)
    if report is not None and (os.path.isdir(report) or not os.path.isdir(os.path.dirname(os.path.abspath(report)))):
        raise ValueError(f"--report {report}: " + ("is a folder" if os.path.isdir(report) else "its folder does not exist"))
    jobs = expand_inputs(inputs, out, root)
    if use_ray:
        from .rayrun import import_ray

        import_ray()
    signals = _Signals()
    signals.install()
    results: List[dict] = []
    prog = None
    lock = OutputLock(out)
    try:
        os.makedirs(out, exist_ok=True)
        lock.acquire()  # before the model loads: a second run on this folder stops at once
        _check_record_dir(out)  # before any flow is computed that could not be recorded
        model, opts, wanted = _model_and_options(model, checkpoint, random_weights, device, precision, pool,
                                                 use_ray, format, step, size, short_side, bound, rgb)
        want = opts.record()
        todo, notes = _plan(jobs, want, overwrite, results)
        prog = Progress(len(jobs), step, progress)
        for r in results:
            prog.input_done(r)
        if todo and use_ray:
            from .rayrun import run_ray

            run_ray(todo, model, ray, device, wanted, opts, batch, workers, prog, results, notes, signals.install)
        elif todo and pool:
            from .pool import run_pool

            run_pool(todo, model, device, wanted, opts, batch, workers, prog, results, notes)
        elif todo:
            from .engine import Engine

            def on_result(r):
                results.append(r)
                prog.input_done(r)

            Engine(model, opts, batch, on_pairs=prog.add_pairs, on_start=prog.start_input,
                   notes=notes).run(todo, on_result)
    except KeyboardInterrupt as e:
        signum = signals.received or getattr(e, "signum", signal.SIGINT)
        finished = sum(r["status"] in ("done", "skipped") for r in results)
        raise ExtractInterrupted(signum, f"interrupted ({signal.Signals(signum).name}) with "
                                         f"{finished} of {plural(len(jobs), 'input')} finished; rerun the same "
                                         "command to resume (finished inputs are skipped, the unfinished one "
                                         "redone)") from None
    finally:
        if prog is not None:
            prog.close()
        lock.release()
        signals.restore()
        if created:
            _remove_if_empty(out)
    return _summary(jobs, results, opts.record(), t0, report)


def _model_and_options(model, checkpoint, random_weights, device, precision, pool, use_ray, format, step, size,
                       short_side, bound, rgb):
    """The model (loaded, and so checked, once here; for workers and actors on the CPU, shipped
    from there), the options with the precision it runs as and the weights' id, and the precision
    asked for (resolved again on each worker's device)."""
    import torch

    from .. import precision as prec
    from ..load import RANDOM_WEIGHTS_SEED, load_model, resolve_device

    shipped = use_ray or pool
    if pool:
        from .pool import devices

        run_dev = torch.device(devices(device, 1)[0])
    elif use_ray:  # the actors' device; Ray's own GPUs are only known after ray.init (see rayrun)
        run_dev = torch.device("cuda" if str(device).startswith("cuda") or (
            device in (None, "auto") and torch.cuda.is_available()) else "cpu")
    elif model is not None and device in (None, "auto"):
        run_dev = next(model.parameters()).device
    else:
        run_dev = resolve_device(device)
    if model is None:
        if random_weights and checkpoint is not None:
            raise ValueError("give a checkpoint or random_weights=True, not both")
        model = load_model(None if random_weights else checkpoint, "cpu" if shipped else run_dev, "fp32",
                           random_weights=random_weights)
        wid = f"random (seed {RANDOM_WEIGHTS_SEED})" if random_weights else _weights_id(model)
        wanted = precision
    else:
        wid = _weights_id(model)
        wanted = precision or prec.of(model)
        if shipped and any(p.device.type != "cpu" for p in model.parameters()):
            import copy

            model = copy.deepcopy(model).cpu()
        elif not shipped:
            model = model.to(run_dev)
    name = prec.resolve(wanted, run_dev)
    if not shipped:
        model = prec.apply(model.eval(), name)
    opts = Options(format, step, size, short_side, float(bound), bool(rgb), name, wid)
    return model, opts, wanted



def _plan(jobs: List[Job], want: dict, overwrite: bool, results: List[dict]):
    """The jobs to compute, and a note per redone input; skipped and refused inputs go to ``results``."""
    todo: List[Job] = []
    notes = {}
    for job in jobs:
        rec = read_record(job)
        if not is_finished(job, rec):
            todo.append(job)  # unfinished, or files of a finished one were removed since: redo
            continue
        changes = option_changes(rec.get("options", {}), want)
        if changes and not overwrite:
            results.append(result(job, "failed", "finished earlier with other options (" + ", ".join(changes)
                                  + "); pass --overwrite to redo it, or use another --out"))
            continue
        changed = identity_changes(rec.get("input_identity"), identity(job.source))
        if changes:
            todo.append(job)
        elif changed:
            notes[job.name] = f"the input changed since the earlier run ({', '.join(changed)}): redone"
            todo.append(job)
        else:
            results.append(result(job, "skipped", "finished earlier", rec.get("frames", 0), 0, 0.0,
                                  (rec.get("height"), rec.get("width"))))
    return todo, notes


def _check_record_dir(out: str) -> None:
    """OUT/.fastflow-done must be a folder this run can write: without it no input can be finished,
    so say so now, naming it, instead of computing flows that could not be recorded."""
    rec = os.path.join(out, RECORD_DIR)
    if os.path.lexists(rec) and not os.path.isdir(rec):
        raise ValueError(f"{rec} exists and is not a folder: it must hold extract's completion records "
                         "(move the file away, or choose another --out)")
    try:
        os.makedirs(rec, exist_ok=True)
        probe = os.path.join(rec, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write extract's completion records in {rec}: {e.strerror or e}") from None


def _remove_if_empty(out: str) -> None:
    """The output folder this run created, when nothing was finished in it."""
    for d in (os.path.join(out, RECORD_DIR), out):
        try:
            os.rmdir(d)
        except OSError:
            pass


def _summary(jobs, results, want, t0, report) -> dict:
    from .files import write_json

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
        "options": {k: v for k, v in want.items() if k != "weights" or str(v).startswith("random")},
        "results": results,
    }
    if report is not None:
        write_json(os.path.abspath(report), summary)
    return summary


def format_summary(s: dict) -> str:
    """The summary as the command prints it: one line, then one line per failed input."""
    random = str(s.get("options", {}).get("weights", "")).startswith("random")
    lines = [f"extract: {plural(s['inputs'], 'input')}: {s['done']} done, {s['skipped']} skipped (finished earlier), "
             f"{s['failed']} failed; {plural(s['frames'], 'frame')}, {plural(s['pairs'], 'pair')} in "
             f"{s['seconds']:.1f} s ({s['pairs_per_s']:.2f} pairs/s)"
             + ("; random weights: the flow is meaningless" if random else "")]
    for r in s["results"]:
        if r["status"] == "failed":
            lines.append(f"  failed: {r['input']}: {r['reason']}")
    return "\n".join(lines)
