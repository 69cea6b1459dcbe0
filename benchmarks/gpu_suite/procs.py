"""The processes the suite starts and what it reads from their output: a killable subprocess with a
log (Proc), a short probe (quick_output), test counts from junit or ``pytest -v`` lines, one line of
a log or of a compute-sanitizer report. Also where the tree is (ROOT, BENCH)."""
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
ROOT = os.path.dirname(BENCH)  # the tree under test

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
                self.kill()
                self.rc, self.timed_out = 124, True
                self._log.write(f"\n[suite: killed after {time.time() - self.t0:.0f} s at the stage deadline]\n")
        self.seconds = round(time.time() - self.t0, 1)
        if not self._log.closed:
            self._log.close()
        ACTIVE.discard(self)
        return self.rc

    def kill(self, grace=5):
        """SIGTERM to the group, SIGKILL ``grace`` seconds later if it is still there."""
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
    """(exit status, stdout + stderr) of a short command; 127 and the error when it cannot run or hangs."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/tmp", env=env)
        return r.returncode, r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)


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
    """The line a log says most in: its last non-blank line (where a traceback ends), at most n characters."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


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
