"""Inputs to jobs: ``@list.txt`` expansion, each input's output folder name and paths."""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Union

__all__ = ["RECORD_DIR", "LOCK_NAME", "Job", "expand_inputs"]

RECORD_DIR = ".fastflow-done"  # OUT/.fastflow-done/<name>.json: an input's completion record
LOCK_NAME = ".fastflow-lock"  # OUT/.fastflow-lock: the run that holds the output folder


@dataclasses.dataclass(frozen=True)
class Job:
    path: str  # the input as given
    name: str  # its output folder, relative to out ("/"-separated with root)
    out: str  # the output root (absolute)

    @property
    def source(self) -> str:  # absolute, so workers started elsewhere (Ray) read the same file
        return os.path.abspath(self.path)

    @property
    def outdir(self) -> str:
        return os.path.join(self.out, *self.name.split("/"))

    @property
    def record_path(self) -> str:
        return os.path.join(self.out, RECORD_DIR, *self.name.split("/")) + ".json"

    @property
    def journal_path(self) -> str:
        """The files an unfinished run of this input wrote, one name a line (see record.py)."""
        return os.path.join(self.out, RECORD_DIR, *self.name.split("/")) + ".journal"


def expand_inputs(inputs: Union[str, Sequence[str]], out: str, root: Optional[str] = None) -> List[Job]:
    """Jobs for the inputs: paths, and ``@list.txt`` files (one path a line; blank lines and lines
    starting with ``#`` skipped; relative paths relative to the current folder, as on the command
    line). Raises ValueError when two different inputs would write to the same output folder, or an
    input's output folder would be the input itself."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: List[str] = []
    for item in inputs:
        item = os.fspath(item)
        if item.startswith("@"):
            lst = item[1:]
            try:
                with open(lst, encoding="utf-8") as f:
                    lines = [ln.strip() for ln in f]
            except OSError as e:
                raise ValueError(f"cannot read the input list {lst}: {e.strerror or e}") from None
            paths += [ln for ln in lines if ln and not ln.startswith("#")]
        else:
            paths.append(item)
    if not paths:
        raise ValueError("no inputs given")
    jobs: List[Job] = []
    by_name: Dict[str, str] = {}
    seen = set()
    for p in paths:
        key = os.path.abspath(p)
        if key in seen:
            continue
        seen.add(key)
        name = _input_name(p, root)
        if name.split("/")[0] in (RECORD_DIR, LOCK_NAME):
            raise ValueError(f"input {p} would write into {name.split('/')[0]}, which fastflow keeps for itself")
        if name in by_name:
            raise ValueError(f"two inputs would write to the same folder {os.path.join(out, name)}: "
                             f"{by_name[name]} and {p} (rename one, or pass --root to keep their folders)")
        by_name[name] = p
        job = Job(p, name, out)
        if os.path.realpath(job.outdir) == os.path.realpath(p):
            raise ValueError(f"the output folder for {p} would be the input folder itself; choose another --out")
        jobs.append(job)
    return jobs


def _input_name(path: str, root: Optional[str]) -> str:
    norm = os.path.normpath(path)
    base = norm if os.path.isdir(norm) else os.path.splitext(norm)[0]
    if root is not None:
        rel = os.path.relpath(os.path.abspath(base), os.path.abspath(root))
        if rel == "." or rel.startswith(".."):
            raise ValueError(f"input {path} is not inside --root {root}")
        return rel.replace(os.sep, "/")
    name = os.path.basename(base)
    if not name or name in (".", ".."):
        name = os.path.basename(os.path.abspath(base))
    return name
