"""Real-process helpers for the kill, signal and concurrency tests: start the ``fastflow`` command in
its own process group with a unique token in its environment, and check that neither the group nor
any process carrying the token (children reparented after their parent died) is left."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid


def command():
    """The console script of the interpreter running the tests (not whatever ``fastflow`` PATH finds
    first: a system-wide install would be tested instead), else the CLI through ``-c``."""
    exe = os.path.join(os.path.dirname(sys.executable), "fastflow")
    if os.path.isfile(exe) and os.access(exe, os.X_OK):
        return [exe]
    found = shutil.which("fastflow")
    if found and os.path.dirname(os.path.realpath(found)) == os.path.dirname(os.path.realpath(sys.executable)):
        return [found]
    return [sys.executable, "-c", "import sys; from fastflow.cli import main; sys.exit(main())"]


class Run:
    """``fastflow ARGS`` started in a new session (its own process group), output captured."""

    def __init__(self, *args, env=None, cwd=None, argv=None):
        self.token = f"FASTFLOW_TEST_TOKEN_{uuid.uuid4().hex}"
        e = dict(os.environ)
        e.pop("FASTFLOW_CHECKPOINT", None)
        e.update(env or {})
        e[self.token] = "1"
        self.p = subprocess.Popen(argv or [*command(), *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=e, cwd=cwd or tempfile.gettempdir(),
                                  start_new_session=True)
        self.pgid = self.p.pid

    def signal(self, sig) -> None:
        os.kill(self.p.pid, sig)

    def wait(self, timeout=120):
        """(returncode, stdout, stderr); a hang is a test failure (the group is killed first)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            out, err = self.p.communicate()
            raise AssertionError(f"fastflow did not finish within {timeout} s:\n{err[-3000:]}")
        return self.p.returncode, out, err

    def left(self):
        """Live (not zombie) processes of the group or carrying the token."""
        return sorted(set(group_members(self.pgid)) | set(processes_with(self.token)))

    def assert_all_gone(self, within=10.0):
        deadline = time.monotonic() + within
        while self.left() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.left()
        if left:
            desc = [describe(p) for p in left]
            self.kill_all()
            raise AssertionError(f"processes left {within} s after the run ended: {desc}")

    def kill_all(self) -> None:
        for pid in self.left():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    return fields[0], int(fields[2])  # state, process group


def group_members(pgid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st and st[1] == pgid and st[0] != "Z":
                out.append(int(d))
    return out


def processes_with(token):
    out, needle = [], token.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        st = _stat(d)
        if needle in env and st and st[0] != "Z":
            out.append(int(d))
    return out


def describe(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        return f"{pid}: {cmd[:160]}"
    except OSError:
        return str(pid)


def wait_for_file(path, run=None, timeout=90):
    """Wait until ``path`` exists (a test hook's marker); fail early if the run ended first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if run is not None and run.p.poll() is not None:
            rc, out, err = run.wait()
            raise AssertionError(f"the run ended (exit {rc}) before {path} appeared:\n{out}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            if run is not None:
                run.kill_all()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)
