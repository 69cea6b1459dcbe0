"""The output folder's lock: one extract run per ``--out`` at a time.

``OUT/.fastflow-lock`` names its holder (pid, host, start time, command) and is held with
``flock`` for the life of the run. It is taken atomically: the file is written and locked under a
temporary name, then hard-linked to its name (which fails if another run got there first). A lock
file whose ``flock`` can be taken belongs to a run that is gone (a kill leaves the file, never the
``flock``): it is stale and taken over, with a note. Lock files from another host (a shared file
system, where ``flock`` may not reach) are reported with how to remove them."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Callable, Optional

from .jobs import LOCK_NAME

__all__ = ["OutputInUseError", "OutputLock"]


class OutputInUseError(OSError):
    """Another extract run holds the output folder."""


def _holder(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(h: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if "started" in h else "?"
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')}, since {when} ({h.get('command', '?')[:120]})"


class OutputLock:
    """``with OutputLock(out): ...``; raises :class:`OutputInUseError` naming the holder."""

    def __init__(self, out: str, note: Optional[Callable[[str], None]] = None):
        self.path = os.path.join(out, LOCK_NAME)
        self.note = note or (lambda s: print(f"fastflow: {s}", file=sys.stderr, flush=True))
        self.fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        import fcntl

        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                           "command": " ".join(sys.argv)})
        for _ in range(20):
            tmp = f"{self.path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
            try:
                os.write(fd, info.encode())
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.link(tmp, self.path)  # atomic: fails if the lock file exists
            except FileExistsError:
                os.close(fd)
                os.remove(tmp)
                if self._take_over(info):
                    return self
                continue
            except BaseException:
                os.close(fd)
                os.remove(tmp)
                raise
            os.remove(tmp)
            self.fd = fd
            return self
        raise OutputInUseError(f"cannot take the lock {self.path} (it keeps changing hands)")

    def _take_over(self, info: str) -> bool:
        """The lock file exists: take it if its holder is gone (True), raise if it is alive, or
        False when it vanished meanwhile (try again)."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            h = _holder(self.path)
            raise OutputInUseError(f"the output folder {os.path.dirname(self.path)} is in use by another fastflow "
                                   f"extract run: {_describe(h)}; wait for it to finish, or use another --out") from None
        try:
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                os.close(fd)  # replaced meanwhile by a run that took it over: look again
                return False
        except FileNotFoundError:
            os.close(fd)
            return False
        h = _holder(self.path)
        if h.get("host") not in (None, socket.gethostname()):
            os.close(fd)
            raise OutputInUseError(f"the output folder {os.path.dirname(self.path)} is locked by a run on another "
                                   f"host: {_describe(h)}; if that run is gone, remove {self.path}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self.fd = fd
        self.note(f"took over a stale lock of a run that is gone ({_describe(h)}); its unfinished inputs are redone")
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # while still holding the flock: a waiting run then finds no file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
