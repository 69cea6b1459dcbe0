"""The GPU suite behind gpu_suite.sh: stages in their own subprocesses under one time budget, one JSON
record rewritten after every stage.

    python benchmarks/suite.py [OUTDIR] [--quick] [--budget SECONDS] [--stages a,b] [--compile]

Each stage gets a timeout carved from what is left of the budget (its own cap at most; skipped when
less than its floor is left). While a stage runs, its log sits in OUTDIR; when it ends the log moves
into OUTDIR/suite_logs.tar.gz and the record (OUTDIR/<date>-<gpu>-<commit>.json) is rewritten
atomically, so a call killed at any point still returns a usable record (a stage it was in says
"running"). Without a GPU the suite is a dry run: GPU-only stages are skipped, smoke and bench run
their code paths at tiny sizes on the CPU. Exit status: 0 no stage failed or timed out, 1 one did,
2 bad arguments.

Stages, in the order of what they verify per minute (--quick runs those not marked):
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sys
import tarfile
import time

from merge_records import finalize
from treehash import tree_hash

from .procs import ACTIVE, ROOT, Proc, first_line, quick_output
from .stages.build import adopt_stamp
from .stages.tests import NoPytest
from .table import ALL, DRY_RUN_BUDGET, DRY_RUN_FLOORS, FULL, GPU_ONLY, LIMITS, MARGIN, QUICK, STAGES, describe


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler Suite.run installs)."""


class Suite:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.deadline = self.t0 + args.budget - MARGIN
        self.out = os.path.abspath(args.outdir)
        self.work = os.path.abspath(args.work)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.logs = os.path.join(self.work, f"run-{stamp}-{os.getpid()}")
        os.makedirs(self.out, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_BREAK_SYSTEM_PACKAGES="1",
                        FASTFLOW_SUITE_WORK=self.work)
        self.env.setdefault("FASTFLOW_CUDA_ARCHS", "90")
        self.py = sys.executable
        self.record = None
        self.path = None
        self.carried_files = {}  # op_tests files a --redo call takes from the last record

    def left(self):
        return self.deadline - time.time()

    # -- environment
    def gpu_info(self):
        """torch's view of the machine, from a subprocess (the runner itself never imports torch)."""
        probe = ("import json, torch, importlib.util as u\n"
                 "ok = torch.cuda.is_available()\n"
                 "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpu_count': torch.cuda.device_count(),\n"
                 "  'gpu': torch.cuda.get_device_name(0) if ok else None,\n"
                 "  'capability': '%d.%d' % torch.cuda.get_device_capability(0) if ok else None,\n"
                 "  'modules': {m: u.find_spec(m) is not None for m in ('pytest', 'hypothesis', 'skimage', 'wheel')}}))")
        rc, out = quick_output([self.py, "-c", probe], 90, self.env)
        try:
            return json.loads(out.strip().splitlines()[-1]) if rc == 0 else {"probe_error": first_line(out)}
        except (ValueError, IndexError):
            return {"probe_error": first_line(out)}

    def probe(self):
        info = self.gpu_info()
        if self.args.device == "cpu":
            info["gpu"] = None
        elif self.args.device == "cuda" and not info.get("gpu"):
            info["gpu"] = "assumed GPU (--device cuda)"
        rc, out = quick_output(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,memory.total",
                                "--format=csv,noheader"], 30)
        smi = [v.strip() for v in out.strip().splitlines()[0].split(",")] if rc == 0 and out.strip() else []
        info["driver"] = smi[0] if smi else "unknown"
        info["nvidia_smi"] = dict(zip(("driver", "max_sm_clock", "memory"), smi))
        commit = os.environ.get("FASTFLOW_COMMIT")
        if not commit:
            rc, out = quick_output(["git", "-C", ROOT, "rev-parse", "HEAD"], 30)
            commit = out.strip() if rc == 0 else "unknown"
        self.has_gpu = bool(info.get("gpu"))
        rec = {"gpu": info.get("gpu") or "no GPU", "driver": info["driver"], "torch": info.get("torch"),
               "cuda": info.get("cuda"), "capability": info.get("capability"), "commit": commit,
               "csrc_tree": tree_hash(os.path.join(ROOT, "csrc")),
               "date": datetime.date.today().isoformat(),
               "suite": {"mode": "quick" if self.args.quick else "full", "budget_s": self.args.budget,
                         "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                         "dry_run": not self.has_gpu, "host_cpus": os.cpu_count(), "kernel": platform.release()},
               "stages": {s: {"status": "pending"} for s in self.args.stage_list}}
        if "probe_error" in info:
            rec["suite"]["probe_error"] = info["probe_error"]
        rec["suite"]["modules"] = info.get("modules", {})
        rec["suite"]["nvidia_smi"] = info["nvidia_smi"]
        rec["suite"]["compute_sanitizer"] = shutil.which("compute-sanitizer")
        if not self.has_gpu:
            rec["suite"]["note"] = "no GPU found: GPU-only stages skipped, smoke and bench ran tiny on the CPU"
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", rec["gpu"]).strip("-")
        self.path = os.path.join(self.out, f"{rec['date']}-{gpu}-{commit[:8]}.json")
        self.record = rec

    # -- output
    def save(self):
        """The record, summary keys recomputed, written atomically to OUTDIR and as this machine's last record."""
        self.record["suite"]["elapsed_s"] = round(time.time() - self.t0, 1)
        finalize(self.record)
        for path in (self.path, self.last_record_path()):
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.record, f, indent=1)
                f.write("\n")
            os.replace(tmp, path)

    def archive(self):
        tmp = os.path.join(self.out, "suite_logs.tar.gz.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(self.logs, arcname="suite_logs")
        os.replace(tmp, os.path.join(self.out, "suite_logs.tar.gz"))

    def live(self, name):
        """Log path for a running stage: in OUTDIR, so a killed call still returns it."""
        return os.path.join(self.out, name + ".log")

    def settle(self, *items):
        """Move finished logs (paths or Procs, whose log_path follows) from OUTDIR into the archive folder."""
        for item in items:
            path = item.log_path if isinstance(item, Proc) else item
            if os.path.exists(path):
                dest = os.path.join(self.logs, os.path.basename(path))
                shutil.move(path, dest)
                if isinstance(item, Proc):
                    item.log_path = dest

    # -- the run
    def last_record_path(self):
        return os.path.join(self.work, "last_record.json")

    def redo(self):
        """--redo: carry over the stages this machine's last record (same csrc tree and GPU) finished or
        skipped for a reason other than the budget; run the others (timed out, skipped for the budget,
        killed while running, never started)."""
        try:
            with open(self.last_record_path()) as f:
                last = json.load(f)
        except (OSError, ValueError):
            print("== redo: no earlier record on this machine: running every stage", flush=True)
            return
        if (last.get("csrc_tree"), last.get("gpu")) != (self.record["csrc_tree"], self.record["gpu"]):
            print("== redo: the last record is of another csrc tree or GPU: running every stage", flush=True)
            return
        kept = []
        ops = last.get("stages", {}).get("op_tests", {})
        if ops.get("status") not in ("passed", "failed"):
            self.carried_files = {f: d for f, d in (ops.get("result") or {}).get("files", {}).items()
                                  if isinstance(d, dict) and d.get("status") in ("passed", "failed", "skipped")}
        for name, entry in last.get("stages", {}).items():
            skipped_for_good = entry.get("status") == "skipped" and not str(entry.get("note", "")).startswith("budget")
            if entry.get("status") in ("passed", "failed") or skipped_for_good:
                self.record["stages"][name] = dict(entry, carried_over=True)
                kept.append(name)
        self.todo = [n for n in self.todo if n not in kept]
        self.record["suite"]["redo_of"] = last.get("suite", {}).get("started")
        print(f"== redo: carried over {','.join(kept) or 'nothing'}; running {','.join(self.todo) or 'nothing'}", flush=True)

    def run(self):
        """Every stage in order; on SIGTERM (the caller's time limit) the running stage's processes
        are killed, it is recorded as timed out, and the record and archive are written once more."""
        def terminate(signum, frame):
            raise Terminated()

        old = signal.signal(signal.SIGTERM, terminate)
        try:
            return self._run()
        except Terminated:
            for p in list(ACTIVE):
                p.kill(grace=1)
            for name, entry in (self.record or {}).get("stages", {}).items():
                if entry.get("status") == "running":
                    entry.update(status="timed out", note="the suite was terminated (SIGTERM) during this stage")
            if self.record:
                self.save()
                self.archive()
            print("gpu_suite: terminated", flush=True)
            return 1
        finally:
            signal.signal(signal.SIGTERM, old)

    def _run(self):
        self.probe()
        if not self.has_gpu:  # the dry run ends by itself within 4 minutes, whatever the budget
            self.deadline = min(self.deadline, self.t0 + DRY_RUN_BUDGET - MARGIN)
        adopt_stamp(self)  # an in-place build by an earlier call goes on PYTHONPATH for every stage
        self.todo = list(self.args.stage_list)
        if self.args.redo:
            self.redo()
        self.save()
        for i, name in enumerate(self.todo):
            entry = self.record["stages"][name]
            cap, floor = LIMITS[name][0], self.floor(name)
            skip = self.skip_reason(name, floor)
            if skip:
                entry.update(status="skipped", note=skip)
                print(f"== {name}: skipped ({skip})", flush=True)
                self.save()
                continue
            # keep the floors of the stages after this one in reserve, so a slow stage cannot starve them
            reserve = sum(self.floor(n) for n in self.todo[i + 1:] if not self.skip_reason(n, 0))
            timeout = min(cap, self.left(), max(floor, self.left() - reserve))
            entry.update(status="running", timeout_s=round(timeout))
            self.save()
            print(f"== {name} (timeout {timeout:.0f} s, {self.left():.0f} s of budget left)", flush=True)
            t = time.time()
            try:
                status, note, result = STAGES[name].run(self, t + timeout)
            except NoPytest:
                status, note, result = "skipped", "pytest is not installed on this machine", {}
            except Exception as e:  # a bug in a stage's parsing must not cost the record
                status, note, result = "failed", f"suite error: {type(e).__name__}: {e}", {}
            entry.update(status=status, seconds=round(time.time() - t, 1), note=note, result=result)
            self.save()
            self.archive()
            print(f"   {name}: {status} in {entry['seconds']:.0f} s{': ' + note if note else ''}", flush=True)
        self.record["suite"]["finished"] = True
        self.save()
        self.archive()
        return self.summary()

    def floor(self, name):
        """The least time worth starting stage ``name`` with."""
        return LIMITS[name][1] if self.has_gpu else DRY_RUN_FLOORS.get(name, LIMITS[name][1])

    def skip_reason(self, name, floor):
        if not self.has_gpu and name in GPU_ONLY:
            return "no GPU"
        if self.left() < floor:
            return f"budget: {max(0, self.left()):.0f} s left, stage needs {floor} s"
        return None

    def summary(self):
        """The record in a few lines on stdout; the exit status (1 when a stage failed or timed out)."""
        st = self.record["stages"]
        bad = [n for n, e in st.items() if e["status"] in ("failed", "timed out")]
        t = self.record["tests"]
        print(f"gpu_suite: {self.record['gpu']}, csrc {self.record['csrc_tree'][:12]}, "
              f"{time.time() - self.t0:.0f} s; tests {t['passed']} passed, {t['failed']} failed, "
              f"{t['errors']} errors, {t['skipped']} skipped")
        for n, e in st.items():
            print(f"  {n:12} {e['status']:9} {e.get('seconds', 0):6.0f} s  {str(e.get('note') or '')[:150]}")
        smoke = (st.get("smoke", {}).get("result") or {}).get("cases", {})
        for name in [k for k, v in smoke.items() if v.startswith("FAIL")][:12]:
            print(f"  smoke FAIL {name}: {smoke[name][5:160]}")
        for name, d in ((st.get("op_tests", {}).get("result") or {}).get("files") or {}).items():
            print(f"  op_tests {name:12} {d.get('status')} {d.get('counts') or d.get('note', '')}")
        for test in self.record["tests_failed"][:12]:
            print(f"  test FAILED {test}")
        for line in self.record["tests_measured_errors"][:12]:
            print(f"  measured: {line[:150]}")
        for tool, v in self.record["sanitizer"].items():
            if not tool.endswith("_seconds"):
                print(f"  sanitizer {tool}: {str(v)[:150]}")
        for r in self.record["bench"]:
            if "median_ms" in r:
                print(f"  bench {r['impl']:>14} {r['precision']:>5} b{r['batch']:<2} {r['height']}x{r['width']}: "
                      f"{r['median_ms']:.3f} ms, {r['pairs_per_s']:.0f} pairs/s, peak {r.get('peak_mem_mb')} MB"
                      + (f" (forecast {r['forecast_ms']:.3f} ms)" if "forecast_ms" in r else ""))
        print(f"record: {self.path}")
        return 1 if bad else 0


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="gpu_suite.sh", description=__doc__ + describe(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "results"),
                    help="where the record, suite_logs.tar.gz and running stages' logs go (default: $OUT, else benchmarks/results)")
    ap.add_argument("--quick", action="store_true", help="the stages for one 15-minute GPU window")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole suite, stages' timeouts carved from it (default 540 with --quick, else 3600)")
    ap.add_argument("--stages", default=None, help=f"comma-separated subset of {','.join(ALL)}, run in that order")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile max-autotune stage (never in --quick)")
    ap.add_argument("--redo", action="store_true",
                    help="run only the stages the last record on this machine (same csrc tree and GPU) did not "
                         "finish, and carry the finished ones over: a second call in the same window")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="cpu: the dry run even with a GPU; cuda: run the GPU stages even when none is found "
                         "(to test the suite's plumbing; they fail where they need the GPU)")
    ap.add_argument("--work", default=os.environ.get("FASTFLOW_SUITE_WORK", "/tmp/fastflow_suite"),
                    help="logs (a folder per run) and the build stamp")
    ap.add_argument("--sanitizers", default="memcheck,racecheck,initcheck,synccheck",
                    help="compute-sanitizer tools; the first two always run, the others beside them when the budget allows")
    ap.add_argument("--sanitizer-size", default="64x128", help="HxW of the sanitized forward")
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds per benchmark configuration")
    args = ap.parse_args(argv)
    if args.outdir.startswith("-"):
        ap.error(f"OUTDIR {args.outdir!r} looks like an option")
    if args.budget is None:
        args.budget = 540.0 if args.quick else 3600.0
    if args.budget < 30:
        ap.error("--budget must be at least 30 seconds")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    m = re.fullmatch(r"(\d+)x(\d+)", args.sanitizer_size)
    if not m or int(m.group(1)) % 64 or int(m.group(2)) % 64 or "0" in (m.group(1), m.group(2)):
        ap.error(f"--sanitizer-size must be HxW, positive multiples of 64, got {args.sanitizer_size!r}")
    tools = [t for t in args.sanitizers.split(",") if t]
    if not tools or any(t not in ("memcheck", "racecheck", "initcheck", "synccheck") for t in tools):
        ap.error(f"--sanitizers must name some of memcheck,racecheck,initcheck,synccheck, got {args.sanitizers!r}")
    if args.stages is not None:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = [s for s in stages if s not in ALL]
        if unknown:
            ap.error(f"unknown stage(s) {','.join(unknown)}; stages: {','.join(ALL)}")
        if args.quick and "compile" in stages:
            ap.error("the compile stage is never part of --quick")
    else:
        stages = list(QUICK if args.quick else FULL)
        if args.compile:
            if args.quick:
                ap.error("--compile is a separate stage, never part of --quick")
            stages.append("compile")
    args.stage_list = stages
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return Suite(args).run()
