"""``extract(ray=...)``: the same engine in Ray actors, one model each, inputs handed out as actors
free up; a task of an actor that dies is retried (the actor restarts up to 2 times, a lost actor
is replaced) and the input redone from its start.

Workers import the driver's installed ``fastflow``: the run gives its Ray job a ``working_dir`` (an
empty folder), so Ray does not put the driver's current folder, possibly a source checkout with an
uncompiled ``fastflow/``, first on the workers' ``sys.path``. The model goes through the object
store once, nested in a list so the actors' constructor arguments hold no object-store reference
(Ray logs an error for those on actors that may restart). A local Ray the run started is shut down
at the end, also on an exception (Ctrl-C, SIGTERM through ``extract``'s handler)."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import deque
from typing import Callable, Dict, List, Optional, Tuple

from .jobs import Job
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

    def __init__(self, boxed_model, device, precision, opts, batch, threads):
        import ray
        import torch

        from .. import precision as prec
        from .engine import Engine

        if threads:
            torch.set_num_threads(threads)
        dev = torch.device(device)
        model = ray.get(boxed_model[0])
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
        boxed = [ray.put(model)]  # kept alive here for restarts; nested, so not a constructor argument ref
        cls = ray.remote(max_restarts=2, max_task_retries=2, **actor_opts)(_RayWorker)

        def new_actor():
            return cls.remote(boxed, dev, precision, opts, batch, threads)

        spare = 2 * n  # actors that died for good are replaced this many times in all
        waiting = deque(todo)
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
            except Exception as e:  # noqa: BLE001 - retries exhausted: this input fails
                clear_own(job)
                r = result(job, "failed", f"Ray task failed after retries: {first_line(e)[:300]}")
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
            r = result(job, "failed", "no Ray worker left to run it")
            results.append(r)
            progress.input_done(r)
    finally:
        if started:
            ray.shutdown()
