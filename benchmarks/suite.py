"""The GPU suite behind gpu_suite.sh: stages in their own subprocesses under one time budget, one JSON
record rewritten after every stage.

    python benchmarks/suite.py [OUTDIR] [--quick] [--budget SECONDS] [--stages a,b] [--compile]

Stages, in the order of what they verify per minute (``--quick`` runs these):
  build        pip -v install for sm_90 (FASTFLOW_CUDA_ARCHS), skipped when the installed build
               already matches the csrc tree and setup.py (a stamp in the work folder)
  smoke        benchmarks/smoke_cuda.py: every op and layer shape, four precisions, then the model
  model_tests  tests/test_model_cuda.py, measured errors printed (-rA)
  sanitizer    compute-sanitizer memcheck + racecheck on a small forward, in parallel (initcheck and
               synccheck beside them when the budget allows)
  op_tests     the CUDA op tests, one pytest per file (-m cuda), --maxfail, faulthandler_timeout
  bench        fastflow fp16/bf16/tf32/fp32 vs the reference and eager fp16 channels_last, batch 1
               and 16, 448x1024, peak memory (benchmarks/bench_worker.py, one process per config)
  layers       per-layer fp16 table against cuDNN (benchmarks/bench_conv_layers.py)
Not in --quick: all_tests (the whole pytest suite), compile (torch.compile max-autotune, also with
--compile).

Each stage gets a timeout carved from what is left of the budget (its own cap at most; skipped when
less than its floor is left). While a stage runs, its log sits in OUTDIR; when it ends the log moves
into OUTDIR/suite_logs.tar.gz and the record (OUTDIR/<date>-<gpu>-<commit>.json) is rewritten
atomically, so a call killed at any point still returns a usable record (a stage it was in says
"running"). Without a GPU the suite is a dry run: GPU-only stages are skipped, smoke and bench run
their code paths at tiny sizes on the CPU. Exit status: 0 no stage failed or timed out, 1 one did,
2 bad arguments.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from merge_records import RAN, finalize, targets  # noqa: E402,F401  (targets: the record's API)
from treehash import tree_hash  # noqa: E402

QUICK = ("build", "smoke", "model_tests", "sanitizer", "op_tests", "bench", "layers")
FULL = QUICK + ("all_tests",)
ALL = FULL + ("compile",)
# (cap, floor) seconds: the most a stage may take, and the least worth starting it with.
LIMITS = {"build": (300, 60), "smoke": (180, 30), "model_tests": (200, 40), "sanitizer": (200, 45),
          "op_tests": (300, 30), "bench": (240, 60), "layers": (150, 30), "all_tests": (900, 120),
          "compile": (600, 150)}
OP_TEST_FILES = ("normalize_pack", "upsample_flow", "warp", "flow_head", "conv2d_lrelu", "deconv_lrelu", "reliability",
                 "io", "tracking", "viz")
OP_TESTS_IN_OPS = OP_TEST_FILES[:6]  # tests/ops/test_<op>.py; the others are tests/test_<name>.py
OP_TEST_WEIGHT = {"normalize_pack": 30, "upsample_flow": 25, "warp": 45, "flow_head": 110, "conv2d_lrelu": 200,
                  "deconv_lrelu": 100}  # ~ CUDA tests each
MARGIN = 8  # seconds kept back at the end for the last record and archive
DRY_RUN_BUDGET = 230  # seconds: the most a run without a GPU takes
DRY_RUN_FLOORS = {"model_tests": 25, "bench": 30}  # their tiny CPU forms need less than on a GPU; above
# the 22 s a minimum budget (30 s less MARGIN) leaves, so a 30 s budget starts nothing (it started
# model_tests when the first stages took under 2 s)
SMOKE_SIMT_SHARE = 45  # dry run: seconds of the smoke stage for the SIMT part (when the build has it)
SANITIZER_GRACE = 45
# compute-sanitizer refusing the machine (seen on gVisor GPU machines), not a finding about fastflow
UNSUPPORTED = re.compile(r"Device not supported|Unable to find injection library|unsupported (device|driver)", re.I)  # --quick: seconds initcheck / synccheck may run on after memcheck and racecheck


# ------------------------------------------------------------------------------------------------
# Processes


ACTIVE = set()  # running Procs, killed if the suite itself is terminated


class Proc:
    """A subprocess in its own process group writing to a log; killed as a group at its deadline."""

    def __init__(self, cmd, log_path, env=None, cwd="/tmp"):
        self.cmd, self.log_path, self.t0 = cmd, log_path, time.time()
        self.rc, self.timed_out = None, False
        self._log = open(log_path, "w")
        self._log.write("$ " + " ".join(cmd) + "\n")
        self._log.flush()
        try:
            self._p = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=cwd, env=env, start_new_session=True)
        except OSError as e:
            self._log.write(f"[suite: cannot start: {e}]\n")
            self._p, self.rc = None, 127
        else:
            ACTIVE.add(self)

    def wait(self, deadline):
        """Exit status, or 124 after killing the group at ``deadline`` (time.time() value)."""
        if self._p is not None and self.rc is None:
            try:
                self.rc = self._p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self._kill()
                self.rc, self.timed_out = 124, True
                self._log.write(f"\n[suite: killed after {time.time() - self.t0:.0f} s at the stage deadline]\n")
        self.seconds = round(time.time() - self.t0, 1)
        if not self._log.closed:
            self._log.close()
        ACTIVE.discard(self)
        return self.rc

    def _kill(self, grace=5):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self._p.pid, sig)
            except ProcessLookupError:
                return
            try:
                self._p.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def quick_output(cmd, timeout=60, env=None):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/tmp", env=env)
        return r.returncode, r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)


# ------------------------------------------------------------------------------------------------
# Parsing


def junit_counts(path):
    """(counts, failed test ids) from a junit file, or (None, []) when it is missing or unreadable."""
    if not os.path.exists(path):
        return None, []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None, []
    counts, failed = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}, []
    for case in root.iter("testcase"):
        kinds = {c.tag for c in case}
        if kinds & {"failure", "error"}:
            counts["failed" if "failure" in kinds else "errors"] += 1
            failed.append(f"{case.get('classname')}::{case.get('name')}")
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failed


def verbose_counts(text):
    """Counts from ``pytest -v`` progress lines (for a run killed before it wrote its junit)."""
    counts, failed = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}, []
    for m in re.finditer(r"^(\S+::.+?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", text, re.M):
        key = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors"}.get(m.group(2), "skipped")
        counts[key] += 1
        if key in ("failed", "errors"):
            failed.append(m.group(1))
    return counts, failed


def first_line(text, n=300):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


# ------------------------------------------------------------------------------------------------
# The runner


class NoPytest(Exception):
    """The machine's Python has no pytest (no network to install it)."""


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler Suite.run installs)."""


def sanitizer_finding(text: str, rc) -> str:
    """One line for a failed compute-sanitizer run: its first report ("Uninitialized __global__ memory
    read of size 2 bytes") and the kernel it names, not the banner every run prints first."""
    lines = [ln[len("========="):].strip() for ln in text.splitlines() if ln.startswith("=========")]
    reports = [ln for ln in lines if ln and not ln.startswith(("COMPUTE-SANITIZER", "ERROR SUMMARY"))]
    if not reports:
        plain = "\n".join(ln for ln in text.splitlines() if not ln.startswith("========="))
        return f"rc={rc}: {first_line(plain)}"[:400]
    where = next((ln for ln in reports[1:4] if ln.startswith("at ")), "")
    return f"{reports[0]} {where}".strip()[:400]


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

    # -- time
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

    # -- stages
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
                p._kill(grace=1)
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
        self.adopt_stamp()
        self.todo = list(self.args.stage_list)
        if self.args.redo:
            self.redo()
        self.save()
        for i, name in enumerate(self.todo):
            entry = self.record["stages"][name]
            cap, floor = LIMITS[name][0], self.floor(name)
            fn = getattr(self, "stage_" + name)
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
                status, note, result = fn(t + timeout)
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
        if not self.has_gpu and name in ("build", "sanitizer", "op_tests", "layers", "all_tests", "compile"):
            return "no GPU"
        if self.left() < floor:
            return f"budget: {max(0, self.left()):.0f} s left, stage needs {floor} s"
        return None

    def summary(self):
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
                      f"{r['median_ms']:.3f} ms, {r['pairs_per_s']:.0f} pairs/s, peak {r.get('peak_mem_mb')} MB")
        print(f"record: {self.path}")
        return 1 if bad else 0

    def pyenv(self):
        return self.env

    # build ---------------------------------------------------------------------------------------
    def build_key(self):
        import hashlib

        with open(os.path.join(ROOT, "setup.py"), "rb") as f:
            setup = hashlib.sha1(f.read()).hexdigest()
        return {"csrc_tree": self.record["csrc_tree"], "setup_py": setup, "archs": self.env["FASTFLOW_CUDA_ARCHS"]}

    def installed(self):
        """(extension file, mtime, build_info) of the fastflow that Python imports outside the tree."""
        code = ("import json, os, fastflow, fastflow._backend as b\n"
                "f = b.load().__file__\n"
                "print(json.dumps({'file': f, 'mtime': os.path.getmtime(f), 'info': fastflow.build_info()}))")
        rc, out = quick_output([self.py, "-c", code], 60, self.pyenv())
        try:
            return json.loads(out.strip().splitlines()[-1]) if rc == 0 else None
        except (ValueError, IndexError):
            return None

    def stamp_path(self):
        return os.path.join(self.work, "build_stamp.json")

    def adopt_stamp(self):
        """The stamp of this machine's last build by the suite; an in-place build is put on PYTHONPATH."""
        try:
            with open(self.stamp_path()) as f:
                stamp = json.load(f)
        except (OSError, ValueError):
            return None
        if stamp.get("mode") == "inplace" and ROOT not in self.env.get("PYTHONPATH", "").split(os.pathsep):
            self.env["PYTHONPATH"] = ROOT + os.pathsep + self.env.get("PYTHONPATH", "")
        return stamp

    def stage_build(self, deadline):
        key = self.build_key()
        stamp = self.adopt_stamp()
        have = self.installed()
        if (have and stamp and have["info"].get("cuda_compiled")
                and {k: stamp.get(k) for k in (*key, "file", "mtime")} == dict(key, file=have["file"], mtime=have["mtime"])):
            return "passed", "installed build matches the csrc tree and setup.py: not rebuilt", {
                "rebuilt": False, "build_info": have["info"]}
        in_tree = have and os.path.realpath(have["file"]).startswith(os.path.realpath(ROOT) + os.sep)
        if in_tree and (stamp or {}).get("mode") != "inplace":
            # an editable (developer) install of this very tree: reinstalling would replace it
            return "skipped", f"fastflow is installed editable from this tree ({have['file']}): not rebuilt", {
                "rebuilt": False, "build_info": have["info"]}
        log = self.live("build")
        # the GPU machine needs the CUDA build only: no SIMT host build of the kernels (fastflow._simt)
        env = dict(self.pyenv(), FASTFLOW_BUILD_JOBS=str(os.cpu_count() or 1), FASTFLOW_NO_SIMT="1")
        mode = "pip"
        if not self.can_build_wheel():
            mode = "inplace"  # setuptools < 70.1 without `wheel`: no bdist_wheel, build next to the sources
        if mode == "pip":
            p = Proc([self.py, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps", ROOT], log, env)
            p.wait(deadline)
            if p.rc not in (0, 124) and "fastflow build: " not in p.text():
                # pip refused before compiling anything (packaging, not the code): build in place
                self.settle(p)
                os.replace(os.path.join(self.logs, "build.log"), os.path.join(self.logs, "build_pip.log"))
                mode = "inplace"
        if mode == "inplace":
            p = Proc([self.py, "setup.py", "build_ext", "--inplace"], log, env, cwd=ROOT)
            p.wait(deadline)
            if p.rc == 0:
                self.env["PYTHONPATH"] = ROOT + os.pathsep + self.env.get("PYTHONPATH", "")
        text = p.text()
        self.settle(p)
        messages = [ln.strip() for ln in text.splitlines()
                    if re.search(r"fastflow build:|warning|spill|[Ee]rror|ptxas", ln)
                    and not re.search(r"Werror|byte-compiling is disabled|_BetaConfiguration|warnings\.warn", ln)][:60]
        result = {"rebuilt": True, "mode": mode, "messages": messages, "seconds": p.seconds}
        if p.timed_out:
            return "timed out", f"build not finished in {p.seconds:.0f} s", result
        if p.rc != 0:
            return "failed", f"build failed (rc {p.rc}): {first_line(text)}", result
        have = self.installed()
        if not have:
            return "failed", "built, but `import fastflow` fails outside the tree", result
        result["build_info"], result["extension"] = have["info"], have["file"]
        if not have["info"].get("cuda_compiled"):
            return "failed", "the build has no CUDA kernels (nvcc not found?)", result
        with open(self.stamp_path(), "w") as f:
            json.dump(dict(key, file=have["file"], mtime=have["mtime"], mode=mode), f)
        return "passed", f"{mode} build, archs {have['info'].get('cuda_archs')}", result

    def can_build_wheel(self):
        code = ("import setuptools, importlib.util as u\n"
                "v = tuple(int(x) for x in setuptools.__version__.split('.')[:2])\n"
                "print(v >= (70, 1) or u.find_spec('wheel') is not None)")
        rc, out = quick_output([self.py, "-c", code], 60, self.pyenv())
        return rc == 0 and out.strip().endswith("True")

    # smoke ---------------------------------------------------------------------------------------
    def smoke_run(self, name, args, deadline):
        """One smoke_cuda.py process: (Proc, its CASE lines as {name: "ok ..." | "FAIL ..."}, log text)."""
        p = Proc([self.py, os.path.join(HERE, "smoke_cuda.py"), *args], self.live(name), self.pyenv())
        p.wait(deadline)
        text = p.text()
        self.settle(p)
        cases = {m.group(1): m.group(2) + " " + m.group(3).strip()
                 for m in re.finditer(r"^CASE (.+?): (ok|FAIL) (.*)$", text, re.M)}
        return p, cases, text

    def stage_smoke(self, deadline):
        if self.has_gpu:
            p, cases, text = self.smoke_run("smoke", ["--device", "cuda"], deadline)
            simt = None
        else:
            # the CPU versions of the ops; then, when the build has the SIMT host runtime, the CUDA
            # kernels themselves on the CPU (io, flow head, fp16 convs) for what is left of the stage's
            # time, at most SMOKE_SIMT_SHARE s: cut short there, it does not fail the stage
            p, cases, text = self.smoke_run("smoke", ["--device", "cpu", "--tiny"], deadline)
            simt = None
            share = min(SMOKE_SIMT_SHARE, deadline - time.time())
            if not p.timed_out and share > 20 and self.has_simt():
                q, simt_cases, _ = self.smoke_run("smoke_simt", ["--simt", "--tiny", "--only", "io,flow_head,conv,deconv",
                                                                 "--precisions", "fp16"], time.time() + share)
                cases.update(simt_cases)
                simt = {"cases": len(simt_cases), "rc": q.rc, "cut_short": q.timed_out}
        failed = sum(v.startswith("FAIL") for v in cases.values())
        result = {"device": "cuda" if self.has_gpu else "cpu", "passed": len(cases) - failed, "failed": failed,
                  "cases": cases}
        note_simt = ""
        if simt is not None:
            result["simt"] = simt
            note_simt = f" (+{simt['cases']} through the SIMT runtime{', cut short at its time share' if simt['cut_short'] else ''})"
            if simt["rc"] not in (0, 124) and not any(v.startswith("FAIL") for k, v in cases.items() if k.endswith(" simt")):
                failed += 1  # died without a FAIL line: count it
                result["failed"] = failed
        if p.timed_out:
            return "timed out", f"{len(cases)} cases done before the timeout, {failed} failed", result
        if not cases:
            return "failed", f"no case ran (rc {p.rc}): {first_line(text)}", result
        if p.rc != 0 or failed:
            bad = [k for k, v in cases.items() if v.startswith("FAIL")][:3]
            return "failed", f"{failed} of {len(cases)} cases failed (rc {p.rc}): {'; '.join(bad)}{note_simt}", result
        plain = len(cases) - (simt["cases"] if simt else 0)
        return "passed", f"{plain} cases on {result['device']}{note_simt}", result

    def has_simt(self):
        have = self.installed()
        return bool(have and have["info"].get("simt"))

    # pytest stages -------------------------------------------------------------------------------
    def pytest(self, name, files, deadline, marker="cuda", extra=()):
        """One pytest process; counts from its junit (or its -v lines when killed)."""
        if self.record["suite"]["modules"].get("pytest") is False:
            raise NoPytest()
        log = self.live(name)
        junit = os.path.join(self.logs, f"junit_{name}.xml")
        cmd = [self.py, "-m", "pytest", *files, "-v", "-rA", "--tb=short", "-p", "no:cacheprovider",
               "-o", "faulthandler_timeout=60", f"--junitxml={junit}", *extra]
        if marker:
            cmd += ["-m", marker]
        p = Proc(cmd, log, self.pyenv())
        p.wait(deadline)
        text = p.text()
        self.settle(p)
        counts, failed = junit_counts(junit)
        if counts is None:
            counts, failed = verbose_counts(text)
        measured = [m.group(0).strip()[:200] for m in re.finditer(r"^.*rel err.*$", text, re.M)]
        return p, counts, failed, measured

    @staticmethod
    def tests_status(counts, timed_out, rc):
        if counts["failed"] or counts["errors"]:
            return "failed"
        if timed_out:
            return "timed out"
        if rc not in (0, 5):
            return "failed"
        if counts["passed"] == 0:
            return "skipped"
        return "passed"

    def stage_model_tests(self, deadline):
        p, counts, failed, measured = self.pytest("model_tests", [os.path.join(ROOT, "tests", "test_model_cuda.py")], deadline)
        status = self.tests_status(counts, p.timed_out, p.rc)
        note = f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
        if status == "skipped":
            note += " (no test ran: no GPU visible to PyTorch)"
        return status, note, {"counts": counts, "failed_tests": failed, "measured_errors": measured, "rc": p.rc}

    def stage_op_tests(self, deadline):
        """One pytest per op file; each file's outcome enters the record as soon as it is known, and a
        --redo call runs only the files the last call did not finish."""
        files = [(f, "cuda") for f in OP_TEST_FILES] + [("fuzz", None)]  # fuzz: CPU and CUDA both, unmarked
        per_file = dict(self.carried_files)
        total = dict.fromkeys(("passed", "failed", "skipped", "errors"), 0)

        def result():
            out = {"counts": dict(total), "failed_tests": [], "files": per_file}
            for d in per_file.values():
                for k in total:
                    out["counts"][k] += d.get("counts", {}).get(k, 0)
                out["failed_tests"] += d.get("failed_tests", [])
            return out

        todo = [(f, m) for f, m in files if per_file.get(f, {}).get("status") not in ("passed", "failed", "skipped")]
        for i, (f, marker) in enumerate(todo):
            left = deadline - time.time()
            if left < 10:
                per_file[f] = {"status": "timed out", "note": "not started: stage time used up"}
                continue
            # a share of what is left by the file's size (x1.5 slack): a hung file cannot starve the rest
            weight = OP_TEST_WEIGHT.get(f, 5)
            share = max(20.0, 1.5 * left * weight / sum(OP_TEST_WEIGHT.get(g, 5) for g, _ in todo[i:]))
            path = os.path.join(ROOT, "tests", *(("ops",) if f in OP_TESTS_IN_OPS else ()), f"test_{f}.py")
            p, counts, failed, _ = self.pytest(f"op_tests_{f}", [path],
                                               min(deadline, time.time() + share), marker, ("--maxfail=25",))
            per_file[f] = {"status": self.tests_status(counts, p.timed_out, p.rc), "counts": counts,
                           "failed_tests": failed, "seconds": p.seconds}
            self.record["stages"]["op_tests"]["result"] = result()  # a killed call keeps the files done
            self.save()
        statuses = [d["status"] for d in per_file.values()]
        status = next((s for s in ("failed", "timed out", "passed") if s in statuses), "skipped")
        res = result()
        c = res["counts"]
        note = f"{c['passed']} passed, {c['failed']} failed, {c['errors']} errors, {c['skipped']} skipped"
        if self.carried_files:
            note += f" ({len(self.carried_files)} files carried over)"
        return status, note, res

    def stage_all_tests(self, deadline):
        p, counts, failed, measured = self.pytest("all_tests", [os.path.join(ROOT, "tests")], deadline, marker=None)
        status = self.tests_status(counts, p.timed_out, p.rc)
        return status, f"{counts['passed']} passed, {counts['failed']} failed", {
            "counts": counts, "failed_tests": failed, "measured_errors": measured, "rc": p.rc}

    # sanitizer -----------------------------------------------------------------------------------
    def stage_sanitizer(self, deadline):
        if shutil.which("compute-sanitizer") is None:
            return "skipped", "compute-sanitizer not on PATH", {}
        tools = [t for t in self.args.sanitizers.split(",") if t]
        main = tools[:2]
        if self.args.quick and self.left() < 300:
            tools = main  # initcheck / synccheck only when the budget leaves room for them
        script = os.path.join(HERE, "sanitize_forward.py")
        procs = {}
        for tool in tools:
            cmd = ["compute-sanitizer", "--tool", tool, "--error-exitcode", "3", "--print-limit", "20",
                   self.py, script, "--size", self.args.sanitizer_size]
            procs[tool] = Proc(cmd, self.live(f"sanitizer_{tool}"), self.pyenv())
        res, statuses = {}, []
        for tool in main:
            procs[tool].wait(deadline)
        # the extra tools must not hold the stage up for long once the main two are done
        extra_deadline = min(deadline, time.time() + SANITIZER_GRACE) if self.args.quick else deadline
        for tool, p in procs.items():
            p.wait(deadline if tool in main else extra_deadline)
            text = p.text()
            self.settle(p)
            summary = re.search(r"ERROR SUMMARY: (\d+) error", text)
            if p.timed_out:
                res[tool] = f"timed out after {p.seconds:.0f} s"
                s = "timed out"
            elif UNSUPPORTED.search(text) and "sanitize_forward: done" not in text:
                res[tool], s = f"not run: compute-sanitizer cannot use this machine's GPU ({first_line(text, 160)})", "skipped"
            elif p.rc == 0 and "sanitize_forward: done" in text:
                res[tool], s = "clean", "passed"
            else:
                res[tool], s = sanitizer_finding(text, p.rc), "failed"
            if summary:
                res[tool + "_errors"] = int(summary.group(1))
            res[tool + "_seconds"] = p.seconds
            # every tool's findings fail the stage; only an extra tool cut short by the --quick grace
            # (after memcheck and racecheck are done) is recorded without failing it
            if tool in main or s != "timed out":
                statuses.append(s)
        status = next((s for s in ("failed", "timed out") if s in statuses), "passed")
        if statuses and all(s == "skipped" for s in statuses):
            status = "skipped"  # e.g. gVisor machines: "Device not supported" (not fastflow's fault)
        note = ", ".join(f"{t}: {res[t]}" for t in procs)
        return status, note[:400], {"tools": res}

    # benchmarks ----------------------------------------------------------------------------------
    def bench_rows(self, name, deadline, configs, candidates, repeats, warmup, device):
        """benchmarks/bench_worker.py, one process per config with every candidate (interleaved). If it
        dies (a sticky CUDA error), fresh ``--each`` processes redo the candidates without a row, one
        call each, and one that dies again is recorded as failed and left out of the next process."""
        rows, failures, timed_out = [], [], False
        for b, h, w in configs:
            todo = list(candidates)
            for attempt in range(len(candidates) + 1):
                if not todo:
                    break
                if deadline - time.time() < 10:
                    timed_out = True
                    break
                tag = f"{name}_b{b}_{h}x{w}_{attempt}"
                jsonl = os.path.join(self.logs, tag + ".jsonl")
                log = self.live(tag)
                cmd = [self.py, os.path.join(HERE, "bench_worker.py"), "--batch", str(b), "--size", f"{h}x{w}",
                       "--device", device, "--repeats", str(repeats), "--warmup", str(warmup),
                       "--candidates", ",".join(todo), "--jsonl", jsonl] + (["--each"] if attempt else [])
                p = Proc(cmd, log, self.pyenv())
                p.wait(deadline)
                self.settle(p)
                done = []
                if os.path.exists(jsonl):
                    with open(jsonl) as f:
                        done = [json.loads(ln) for ln in f if ln.strip()]
                for d in done:
                    (failures if "error" in d else rows).append(d)
                self.record["stages"][name]["result"] = {"rows": rows + failures}  # kept if the call is killed
                self.save()
                todo = [c for c in todo if c not in {d["candidate"] for d in done}]
                if p.timed_out:
                    timed_out = True
                    break
                if p.rc != 0 and attempt and todo and not any("error" in d for d in done):
                    # an --each process died inside todo[0] without a word: record it, go on without it
                    failures.append({"candidate": todo[0], "batch": b, "height": h, "width": w,
                                     "error": f"worker died (rc {p.rc}): {first_line(p.text())}"})
                    todo = todo[1:]
        status = "failed" if failures else ("timed out" if timed_out else "passed")
        note = f"{len(rows)} rows" + (f", {len(failures)} failed: " + "; ".join(
            f"{f['candidate']} b{f['batch']}: {f['error'][:120]}" for f in failures) if failures else "")
        return status, note[:600], {"rows": rows + failures}

    def stage_bench(self, deadline):
        if not self.has_gpu:
            return self.bench_rows("bench", deadline, [(1, 64, 64)], ["reference:fp32", "fastflow:fp32"], 2, 1, "cpu")
        configs = [(1, 448, 1024), (16, 448, 1024)]
        if not self.args.quick:
            configs += [(1, 384, 512), (16, 384, 512)]
        cands = ["reference:tf32", "reference:fp32", "eager_fp16_cl:fp16",
                 "fastflow:fp16", "fastflow:bf16", "fastflow:tf32", "fastflow:fp32"]
        return self.bench_rows("bench", deadline, configs, cands, self.args.repeats, 5, "cuda")

    def stage_compile(self, deadline):
        return self.bench_rows("compile", deadline, [(1, 448, 1024)], ["torch_compile:fp16"], self.args.repeats, 5, "cuda")

    def stage_layers(self, deadline):
        rows, notes, status = [], [], "passed"
        precisions = ["fp16"] + ([] if self.args.quick else ["tf32"])
        for prec in precisions:
            path = os.path.join(self.logs, f"layers_{prec}.json")
            log = self.live(f"layers_{prec}")
            p = Proc([self.py, os.path.join(HERE, "bench_conv_layers.py"), "--precision", prec, "--batch", "1",
                      "--height", "448", "--width", "1024", "--json", path], log, self.pyenv())
            p.wait(deadline)
            text = p.text()
            self.settle(p)
            if p.rc != 0 or not os.path.exists(path):
                status = "timed out" if p.timed_out else "failed"
                notes.append(f"{prec}: rc {p.rc}: {first_line(text)}")
                rows.append({"precision": prec, "error": first_line(text, 400)})
                break
            with open(path) as f:
                for r in json.load(f)["layers"]:
                    r["fastflow_pct_of_peak"] = 100.0 * r["fastflow_tflops"] / PEAK_TFLOPS[prec]
                    r.setdefault("precision", prec)
                    rows.append(r)
        return status, "; ".join(notes) or f"{len(rows)} layer rows", {"rows": rows}


# Dense tensor-core / FMA peaks of an H200 / H100 SXM (TFLOP/s), for "% of peak" in the per-layer table.
PEAK_TFLOPS = {"fp16": 989.0, "bf16": 989.0, "tf32": 494.0, "fp32": 67.0}


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="gpu_suite.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    sys.exit(main())
