"""An input's completion record, its journal, and its identity.

- The record ``OUT/.fastflow-done/<name>.json`` is written last, after the files are on disk: an
  input is finished exactly when it exists and every file it lists is there.
- The journal ``OUT/.fastflow-done/<name>.journal`` lists, one a line, every file the running
  input is about to create, flushed to disk before the file gets its name. So a rerun after a kill
  knows which files of ``OUT/<name>/`` it wrote; anything else there is the user's and is never
  removed or overwritten (the writer fails the input instead).
- The identity of an input (size and a hash of its first and last MiB for a file; the names and
  sizes of a folder's frames) is kept in the record, so a changed input is redone, not skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import List, Optional

from .files import is_tmp, write_json
from .jobs import Job

__all__ = ["read_record", "write_record", "option_changes", "identity", "identity_changes", "Journal",
           "own_files", "clear_own", "is_finished"]

_HEAD_TAIL = 1 << 20
# What records of fastflow before the journal counted as its output (they listed no file names).
_LEGACY = re.compile(r"^(.*\.(flo|png)|flow\.npy|(flow_x_|flow_y_|img_)\d+\.jpg)$")


def read_record(job: Job) -> Optional[dict]:
    try:
        with open(job.record_path, encoding="utf-8") as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def write_record(job: Job, record: dict) -> None:
    write_json(job.record_path, record)


def option_changes(old: dict, new: dict) -> List[str]:
    """``key old -> new`` for each option that differs (weights recorded by older fastflow as a
    checkpoint file's hash, ``file:...``, cannot be compared and are not)."""
    return [f"{k} {old.get(k)} -> {v}" for k, v in new.items()
            if old.get(k) != v and not (k == "weights" and str(old.get(k)).startswith("file:"))]


def identity(path: str) -> dict:
    """What identifies the input's content cheaply (see the module docstring)."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    if os.path.isdir(path):
        from ..images import list_frames

        h = hashlib.sha256()
        frames = list_frames(path)
        for p in frames:
            h.update(f"{os.path.basename(p)}\0{os.path.getsize(p)}\n".encode())
        return {"kind": "folder", "files": len(frames), "listing_sha256": h.hexdigest()}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_HEAD_TAIL))
        if st.st_size > _HEAD_TAIL:
            f.seek(max(_HEAD_TAIL, st.st_size - _HEAD_TAIL))
            h.update(f.read(_HEAD_TAIL))
    return {"kind": "file", "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_head_tail": h.hexdigest()}


_COMPARED = ("kind", "files", "listing_sha256", "bytes", "sha256_head_tail")


def identity_changes(old: Optional[dict], new: dict) -> List[str]:
    """What differs between a record's input identity and the input now (mtime alone does not count:
    a copy changes it)."""
    if not old:
        return ["no identity recorded"]
    return [k for k in _COMPARED if old.get(k) != new.get(k)]


class Journal:
    """The files a running input creates, appended and flushed before each file is written."""

    def __init__(self, job: Job):
        os.makedirs(os.path.dirname(job.journal_path), exist_ok=True)
        self.f = open(job.journal_path, "a", encoding="utf-8")

    def add(self, names: List[str]) -> None:
        self.f.write("".join(n + "\n" for n in names))
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def own_files(job: Job) -> set:
    """The files of ``OUT/<name>/`` that fastflow wrote: listed in the record or the journal."""
    names = set()
    rec = read_record(job)
    if rec is not None:
        files = rec.get("files")
        if isinstance(files, list):
            names.update(f for f in files if isinstance(f, str))
        elif isinstance(files, int):  # a record from before file lists: the output patterns
            try:
                names.update(f for f in os.listdir(job.outdir) if _LEGACY.match(f))
            except OSError:
                pass
    try:
        with open(job.journal_path, encoding="utf-8") as f:
            names.update(ln.rstrip("\n") for ln in f if ln.strip())
    except OSError:
        pass
    return {n for n in names if n and "/" not in n and n not in (".", "..")}


def clear_own(job: Job, own: Optional[set] = None) -> None:
    """Remove the input's record, the files fastflow wrote for it, its temporaries and its journal;
    then its folder if nothing else is in it."""
    own = own_files(job) if own is None else own
    for p in (job.record_path,):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass
    try:
        entries = os.listdir(job.outdir)
    except OSError:
        entries = []
    for f in entries:
        if f in own or is_tmp(f):
            try:
                os.remove(os.path.join(job.outdir, f))
            except (FileNotFoundError, IsADirectoryError):
                pass
    try:
        os.remove(job.journal_path)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(job.outdir)
    except OSError:
        pass


def is_finished(job: Job, rec: Optional[dict]) -> bool:
    """The record exists and every file it lists is there (older records: as many output files)."""
    if rec is None:
        return False
    files = rec.get("files")
    if isinstance(files, list):
        return all(os.path.isfile(os.path.join(job.outdir, f)) for f in files)
    if isinstance(files, int):
        try:
            return sum(1 for f in os.listdir(job.outdir) if _LEGACY.match(f)) == files
        except OSError:
            return False
    return False
