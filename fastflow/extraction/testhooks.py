"""Hooks the kill, pause and resume tests drive through the environment (inherited by worker
processes and Ray workers). Unset, they cost one dict lookup per batch."""
from __future__ import annotations

import json
import os
import signal
import time

__all__ = ["after_pairs"]

KILL_AFTER = "_FASTFLOW_TEST_KILL_AFTER_PAIRS"  # SIGKILL this process after this many pairs are written,
KILL_ONCE = "_FASTFLOW_TEST_KILL_ONCE"  # ... only if this file does not exist yet (it is created first)
PAUSE_AFTER = "_FASTFLOW_TEST_PAUSE_AFTER_PAIRS"  # after this many pairs: create PAUSE_FILE and sleep
PAUSE_FILE = "_FASTFLOW_TEST_PAUSE_FILE"  # (JSON: this process's pid and the fastflow package it imported)
PAUSE_SECONDS = "_FASTFLOW_TEST_PAUSE_SECONDS"  # how long (default 300; 0 only writes the file)


def _create_once(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def after_pairs(written: int) -> None:
    """Called by the writer after each batch with the pairs this process has written."""
    env = os.environ
    kill = env.get(KILL_AFTER)
    if kill and written >= int(kill):
        once = env.get(KILL_ONCE)
        if not once or _create_once(once):
            os.kill(os.getpid(), signal.SIGKILL)
    pause = env.get(PAUSE_AFTER)
    if pause and written >= int(pause) and env.get(PAUSE_FILE):
        from .. import __file__ as pkg

        info = json.dumps({"pid": os.getpid(), "fastflow": os.path.dirname(pkg)})
        tmp = env[PAUSE_FILE] + f".{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(info)
        os.replace(tmp, env[PAUSE_FILE])
        time.sleep(float(env.get(PAUSE_SECONDS, "300")))  # the test signals or kills the run meanwhile
