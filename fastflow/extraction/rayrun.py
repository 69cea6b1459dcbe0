"""``extract(ray=...)``: the same engine in Ray actors, one model each, inputs handed out as actors
free up; an actor that dies is replaced and its input redone once from its start (its partial
files cleared through the input's journal), as in the local pool.

Workers import the driver's installed ``fastflow``: the run gives its Ray job a ``working_dir`` (an
empty folder), so Ray does not put the driver's current folder, possibly a source checkout with an
uncompiled ``fastflow/``, first on the workers' ``sys.path``. The model goes through the object
store once (actors are not restartable by Ray, which logs an error line for restartable actors
with object-store arguments). A local Ray the run started is shut down
at the end, also on an exception (Ctrl-C, SIGTERM through ``extract``'s handler)."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import deque
from typing import Callable, Dict, List, Optional, Tuple

from .jobs import Job
from .options import plural
from .pool import RETRIES
from .reader import first_line
from .record import clear_own
from .writer import result

__all__ = ["RAY_HELP", "import_ray", "run_ray"]

RAY_HELP = ("--ray needs Ray: pip install '.[cluster]' in fastflow's source folder (or pip install 'ray>=2.9')")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_HELP) from None
    return ray


class _RayWorker:
    """A Ray actor: one model, inputs one at a time."""

    def __init__(self, model, device, precision, opts, batch, threads):
        import torch

        from .. import precision as prec
        from .engine import Engine

        if threads:
            torch.set_num_threads(threads)
        dev = torch.device(device)
        model = prec.apply(model.to(dev).eval(), prec.resolve(precision, dev))
        self.engine = Engine(model, opts, batch)

    def run(self, job: Job, note: Optional[str]) -> dict:
        out: List[dict] = []
        self.engine.notes = {job.name: note} if note else {}
        self.engine.run([job], out.append)
        return out[0]


def run_ray(todo, model, address, device, precision, opts, batch, workers, progress, results,
            notes: Dict[str, str], on_started: Callable[[], None]) -> None:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kw = {} if address in (None, True, "") else {"address": address}
        empty = tempfile.mkdtemp(prefix="fastflow-ray-")
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"working_dir": empty}, **kw)
        os.rmdir(empty)  # uploaded at init
        started = True
    try:
        on_started()  # the run's own SIGTERM handler again (ray.init installs Ray's)
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
        from .. import precision as prec

        opts = dataclasses.replace(opts, precision=prec.resolve(precision, dev))  # the actors' device
        ref = ray.put(model)  # shipped once; held here while actors come and go
        # No Ray restarts (max_restarts=0): an actor whose process dies is replaced here and its input
        # retried once, as the local pool does; a restartable actor with its model in the object store
        # is what Ray logs an error line about on every run.
        cls = ray.remote(max_restarts=0, **actor_opts)(_RayWorker)

        def new_actor():
            return cls.remote(ref, dev, precision, opts, batch, threads)

        spare = 2 * n  # actors that died are replaced this many times in all
        waiting = deque(todo)
        tries: Dict[str, int] = {}
        running: Dict[object, Tuple[object, Job]] = {}

        def submit(actor) -> None:
            if waiting:
                job = waiting.popleft()
                progress.start_input(job, None)
                running[actor.run.remote(job, notes.get(job.name))] = (actor, job)

        for a in [new_actor() for _ in range(n)]:
            submit(a)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            if not ready:
                continue
            actor, job = running.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:  # the worker process died: replace it, retry once
                clear_own(job)
                tries[job.name] = tries.get(job.name, 0) + 1
                actor = None
                if spare > 0:
                    spare -= 1
                    actor = new_actor()
                if tries[job.name] <= RETRIES and actor is not None:
                    waiting.appendleft(job)
                    submit(actor)
                    continue
                r = result(job, "failed", f"the Ray worker died {plural(tries[job.name], 'time')} on this input: "
                                          f"{first_line(e)[:300]}")
            except Exception as e:  # noqa: BLE001 - the task failed: this input fails
                clear_own(job)
                r = result(job, "failed", f"Ray task failed: {first_line(e)[:300]}")
            results.append(r)
            progress.add_pairs(r["pairs"])
            progress.input_done(r)
            if actor is not None:
                submit(actor)
        for job in waiting:  # every actor died
            r = result(job, "failed", "no Ray worker left to run it")
            results.append(r)
            progress.input_done(r)
    finally:
        if started:
            ray.shutdown()
